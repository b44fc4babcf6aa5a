from keras_practise.utils import text_table


def test_columns_align_and_rules():
    table = text_table.format_table(
        [("name", "n"), ("a", "1000"), ("longer", "7")],
        right_aligned=(1,),
        rules_after=(0,),
    )
    lines = table.splitlines()
    assert lines[0] == "name       n"
    assert lines[1] == "-" * len("longer  1000")
    assert lines[2] == "a       1000"
    assert lines[3] == "longer     7"
