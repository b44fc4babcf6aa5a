"""The authors' PyTorch training steps, timed beside ours in one process.

The user fetches the authors' repository (github.com/DoctorKey/Practise);
its path is given by a flag and none of its code is committed here. Only two
of its files are imported, by path: `models/resnet.py` (their ResNet-50 and
`resnet50_rm_blocks`) and `models/AdaptorWarp.py` (their adaptors as forward
hooks). Their package `__init__` and scripts import torchvision, whose PyPI
wheel does not import beside the CPU build of torch used here.

Their loops (`practise.train`, `finetune.end_to_end_finetune`) call
`.cuda()` unconditionally, so the steps below are those loops' bodies,
statement for statement, on the device Keras' torch backend computes on (the
GPU where torch sees one, else the CPU):

* recoverability (`practise.train`): teacher and student in `eval()`, the
  teacher's features under `no_grad`, the student's forward, MSE, backward
  through the whole student (its weights keep `requires_grad`), SGD on the
  adaptors only;
* finetuning (`finetune.end_to_end_finetune`, `--FT MiR`): the student in
  `train()`, student forward, teacher forward under `no_grad`, MSE, backward,
  SGD on every parameter.

Adaptors go where their `insert_one_block_adaptors_for_resnet` puts them: an
identity 1x1 conv after the stage's downsample conv and after the last conv
of each earlier block of the stage, and before the first conv of each later
block and of the next stage's first block and downsample.
"""

import contextlib
import importlib.util
import io
import os


def _import_file(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class AuthorsCode:
    """ResNet-50 steps of the authors' code, on the same images as ours.

    Args:
        repo: Path of a checkout of github.com/DoctorKey/Practise.
        batch_size: Images per step.

    Raises:
        ValueError: If `repo` lacks `models/resnet.py` or
            `models/AdaptorWarp.py`.
    """

    def __init__(self, repo, batch_size):
        import torch

        paths = [os.path.join(repo, "models", f) for f in ("resnet.py", "AdaptorWarp.py")]
        missing = [p for p in paths if not os.path.exists(p)]
        if missing:
            raise ValueError(
                "--authors_repo must be a checkout of github.com/DoctorKey/Practise. "
                f"Missing: {missing}"
            )
        self.torch = torch
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.resnet = _import_file(paths[0], "practise_authors_resnet")
        self.warp = _import_file(paths[1], "practise_authors_adaptor_warp")
        self.batch_size = batch_size
        self.teacher = self.resnet.resnet50(num_classes=1000)
        self.teacher.get_feat = "pre_GAP"
        self.teacher.eval().to(self.device)

    def _student(self, labels):
        """Their pruned ResNet-50, wrapped with adaptors, and the adaptors."""
        # Our labels are 1-based `stage.position`; theirs `layer{stage}.{index}`.
        dropped = [tuple(int(p) for p in label.split(".")) for label in labels]
        with contextlib.redirect_stdout(io.StringIO()):  # Their prints.
            model = self.resnet.resnet50_rm_blocks(
                [f"layer{stage}.{position - 1}" for stage, position in dropped],
                num_classes=1000,
            )
            model.get_feat = "pre_GAP"
            model.to(self.device)
            wrapped = self.warp.AdaptorWarp(model)
            modules = dict(model.named_modules())
            adaptors = []
            removed_so_far = {}
            for stage, position in sorted(dropped):
                # Indices in the pruned stage, as their insert_all computes.
                index = position - 1 - removed_so_far.get(stage, 0)
                removed_so_far[stage] = removed_so_far.get(stage, 0) + 1
                layer = f"layer{stage}"
                after = [f"{layer}.0.downsample.0"]
                after += [f"{layer}.{i}.conv3" for i in range(index)]
                before = [
                    f"{layer}.{i}.conv1" for i in range(index, 100)
                    if f"{layer}.{i}.conv1" in modules
                ]
                before += [f"layer{stage + 1}.0.conv1", f"layer{stage + 1}.0.downsample.0"]
                for name in after:
                    if name in modules:
                        conv = self._identity(modules[name].out_channels)
                        if wrapped.add_afterconv_for_conv(name, afterconv=conv) is not None:
                            adaptors.append(conv)
                for name in before:
                    if name in modules:
                        conv = self._identity(modules[name].in_channels)
                        if wrapped.add_preconv_for_conv(name, preconv=conv) is not None:
                            adaptors.append(conv)
        return model, wrapped, adaptors

    def _identity(self, channels):
        # Built here: theirs calls `.cuda()` on the new conv.
        torch = self.torch
        conv = torch.nn.Conv2d(channels, channels, kernel_size=1, bias=False)
        conv.weight.data.copy_(torch.eye(channels).view(channels, channels, 1, 1))
        return conv.to(self.device)

    def _batches(self, views):
        # Channels first on the host, as their loaders give them; each batch
        # is copied to the device in the step, as their `data.cuda()` does
        # (and as Keras copies ours from host arrays).
        images = self.torch.from_numpy(views.transpose(0, 3, 1, 2).copy())
        n = len(images)

        def batch(i):
            rows = [(i * self.batch_size + k) % n for k in range(self.batch_size)]
            return images[rows].to(self.device)

        return batch

    def _step(self, forward, parameters, views):
        torch = self.torch
        optimizer = torch.optim.SGD(parameters, lr=0.02, momentum=0.9, weight_decay=1e-4)
        criterion = torch.nn.MSELoss(reduction="mean")
        batch = self._batches(views)

        def step(i):
            data = batch(i)
            with torch.no_grad():
                _, t_features = self.teacher(data)
            optimizer.zero_grad()
            _, s_features = forward(data)
            loss = criterion(s_features, t_features)
            loss.item()  # Their loop logs it every step.
            loss.backward()
            optimizer.step()

        return step

    def recoverability_step(self, label, views, batch_size):
        """`step(i)` of their adaptor training for the block `label`."""
        del batch_size  # Set at construction.
        model, wrapped, adaptors = self._student([label])
        model.eval()
        params = [p for conv in adaptors for p in conv.parameters()]
        return self._step(wrapped, params, views)

    def finetune_step(self, labels, views, batch_size):
        """`step(i)` of their MiR finetuning with `labels` dropped."""
        del batch_size
        model, wrapped, adaptors = self._student(labels)
        model.train()
        model.freeze_classifier()
        params = list(model.parameters()) + [
            p for conv in adaptors for p in conv.parameters()
        ]
        return self._step(wrapped, params, views)
