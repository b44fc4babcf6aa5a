"""Smoke test of the embedded default (README's main command) with tiny settings."""

from keras_practise import demo


def test_demo_runs_end_to_end(tmp_path, capfd):
    plot = tmp_path / "demo.png"
    result = demo.run(
        drop=1, num_samples=16, steps=1, finetune_steps=2, test_images=64,
        plot=str(plot), latency_runs=2,
    )
    captured = capfd.readouterr()
    out = captured.out
    assert "PRACTISE" in out and "teacher" in out
    # No framework warnings on a normal run (TensorFlow's retracing ones).
    assert "WARNING" not in captured.out + captured.err
    assert plot.stat().st_size > 1000
    accuracy = result["accuracy"]
    assert set(accuracy) == {"teacher", "dropped, no recovery", "PRACTISE"}
    # The bundled teacher is a real classifier, far above chance (1/30).
    assert accuracy["teacher"] > 0.5
    assert len(result["report"].blocks) == 1
    # PRACTISE's folded model has the dropped model's architecture: one
    # timing serves both, so noise cannot read as a difference.
    latency = result["latency_ms"]
    assert latency["PRACTISE"] == latency["dropped, no recovery"]
    assert latency["teacher"] != latency["PRACTISE"]
