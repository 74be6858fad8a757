"""Disk cache of the frozen teacher's backbone outputs, keyed by the exact teacher input.

A feature-distillation step needs the teacher's features of the augmented image it trains on.
Augmentation (random resize, flip, crop) makes every view a different input, so the cache key is
a hash of the teacher's input image itself (the tensor the mapper produced), of the teacher's
fingerprint and of the precision it runs in: any augmentation is handled correctly, a view not
seen before is simply a miss. How often views repeat decides what the cache saves: small
datasets, few resize choices and long schedules (or several runs with the same teacher and seed:
ablations) hit often; random crops almost never do, and then the cache costs time (a miss runs the
teacher image by image and writes the features to disk).

On a miss the teacher runs on that image alone, padded only to its own size divisibility, and the
outputs are written to disk; cached or fresh, every image's features are then pasted at the top
left of zero-filled maps of the batch's padded size. So with the cache on, each image's features
are the teacher's on that image alone. They equal the uncached teacher's wherever the uncached
batch was not padded beyond the image's own padded size; where it was (a larger image in the
batch, or ScaleKD padding the teacher to ``teacher_scale`` x the student's padded size), they
differ within the receptive field of that extra padding (bottom/right borders), and the extra
padded area is zero instead of the teacher's response to padding.

The directory belongs to one teacher: its fingerprint (weights, architecture and module settings,
pixel statistics, precision setting) is stored in ``cache_info.json`` and checked when a model
opens the directory; entry keys include it as well, so no entry of another teacher is ever read.
"""
import hashlib
import io
import json
import logging
import os
import tempfile
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from detectron2.structures import ImageList

from .hooks import FeatureRecorder
from .teacher import FrozenTeacher

__all__ = ["TeacherOutputCache", "TeacherCacheError", "teacher_fingerprint", "teacher_precision"]

logger = logging.getLogger(__name__)

_OUTPUTS = "outputs"
_RECORDS = "records"


class TeacherCacheError(RuntimeError):
    """The cache directory belongs to another teacher, or a teacher output cannot be cached."""


_SKIP = object()  # an attribute value that is not a plain setting


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    """The raw bytes of a tensor of any dtype (bf16 included)."""
    return tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def _module_settings(model: torch.nn.Module) -> str:
    """Plain (non-tensor, non-module) attributes of every submodule, e.g. an FPN's fuse type and
    padding settings or a conv's activation, which ``repr(model)`` does not show."""

    def plain(value):
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, (list, tuple)):
            items = [plain(v) for v in value]
            return _SKIP if any(i is _SKIP for i in items) else items
        if isinstance(value, dict):
            items = {str(k): plain(v) for k, v in value.items()}
            return _SKIP if any(i is _SKIP for i in items.values()) else items
        if callable(value) and not isinstance(value, torch.nn.Module):
            return getattr(value, "__qualname__", type(value).__name__)
        return _SKIP

    settings = {}
    for name, module in model.named_modules():
        # not: the train/eval flag, hook registries (their ids change from run to run)
        attrs = {k: plain(v) for k, v in vars(module).items() if k != "training" and "hook" not in k}
        settings[name] = {k: v for k, v in attrs.items() if v is not _SKIP}
    return json.dumps(settings, sort_keys=True, default=str)


def teacher_fingerprint(teacher: FrozenTeacher) -> Dict[str, str]:
    """What the cached outputs depend on: a hash of every weight and buffer, of the module tree
    (layer types and shapes) and the modules' plain settings, the preprocessing (pixel mean/std,
    input format) and the teacher's own autocast setting."""
    model = teacher.model
    weights = hashlib.blake2b(digest_size=16)
    for name, tensor in model.state_dict().items():
        weights.update(name.encode())
        weights.update(f"{tuple(tensor.shape)}{tensor.dtype}".encode())
        weights.update(_tensor_bytes(tensor))
    preprocessing = {
        k: getattr(model, k).detach().cpu().flatten().tolist() if torch.is_tensor(getattr(model, k, None)) else getattr(model, k, None)
        for k in ("pixel_mean", "pixel_std", "input_format")
    }
    architecture = hashlib.blake2b(digest_size=16)
    architecture.update(repr(model).encode())
    architecture.update(_module_settings(model).encode())
    return {
        "model": type(model).__name__,
        "architecture": architecture.hexdigest(),
        "weights": weights.hexdigest(),
        "preprocessing": json.dumps(preprocessing, sort_keys=True),
        "autocast_dtype": str(teacher.autocast_dtype),
    }


def teacher_precision(teacher: FrozenTeacher) -> str:
    """The device type and compute dtype the teacher runs in right now: its own autocast setting
    on CUDA, else the ambient autocast (e.g. the trainer's AMP), else its parameters' dtype."""
    device = teacher.device.type
    if teacher.autocast_dtype is not None and device == "cuda":
        return f"{device}:autocast-{teacher.autocast_dtype}"
    if torch.is_autocast_enabled(device):
        return f"{device}:autocast-{torch.get_autocast_dtype(device)}"
    dtype = next((p.dtype for p in teacher.model.parameters()), torch.float32)
    return f"{device}:{dtype}"


def _flatten(outputs: Mapping[str, torch.Tensor], records: Mapping[str, object], output_keys, record_keys) -> Dict[str, torch.Tensor]:
    """{"outputs/<name>": tensor, "records/<module>": tensor, "records/<module>/<name>": tensor}, keeping
    only the requested keys (``None`` = all)."""
    flat = {}
    for name in outputs if output_keys is None else output_keys:
        flat[f"{_OUTPUTS}/{name}"] = outputs[name]
    for module, value in records.items():
        if torch.is_tensor(value):
            flat[f"{_RECORDS}/{module}"] = value
        elif isinstance(value, Mapping) and all(torch.is_tensor(v) for v in value.values()):
            keys = (record_keys or {}).get(module)
            for name in value if keys is None else keys:
                flat[f"{_RECORDS}/{module}/{name}"] = value[name]
        else:
            raise TeacherCacheError(
                f"Teacher output cache: the recorded output of '{module}' is a {type(value).__name__}; only tensors "
                "and dicts of tensors (e.g. a backbone's feature dict) can be cached. Turn the cache off for this model."
            )
    bad = {k: tuple(v.shape) for k, v in flat.items() if v.dim() != 4}
    if bad:
        raise TeacherCacheError(f"Teacher output cache: only (B, C, H, W) feature maps can be cached, got {bad}.")
    return flat


def _unflatten(flat: Mapping[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], Dict[str, object]]:
    outputs, records = {}, {}
    for path, tensor in flat.items():
        kind, rest = path.split("/", 1)
        if kind == _OUTPUTS:
            outputs[rest] = tensor
        elif "/" in rest:
            module, name = rest.rsplit("/", 1)
            records.setdefault(module, {})[name] = tensor
        else:
            records[rest] = tensor
    return outputs, records


class TeacherOutputCache:
    """Per-image teacher backbone outputs (and recorded teacher features) on disk.

    Args:
        directory: where entries are written (created if missing); one directory per teacher.
        fingerprint: :func:`teacher_fingerprint` of the teacher. A directory written for another
            fingerprint is an error (:class:`TeacherCacheError`): nothing in it is overwritten.

    Entries are ``<directory>/<key[:2]>/<key>.pt`` files, one per teacher image and precision,
    written atomically (a temporary file, then a rename), so an interrupted run or several
    processes writing at once leave no torn entry. An unreadable entry is recomputed and
    rewritten; an entry lacking features another configuration needs is completed (merged). A
    failed write (e.g. a full disk) is logged and training goes on. ``hits``/``misses`` count images.
    """

    INFO_FILE = "cache_info.json"

    def __init__(self, directory: str, fingerprint: Mapping[str, str]):
        if not directory:
            raise ValueError("TeacherOutputCache needs a directory.")
        self.directory = directory
        self.fingerprint = dict(fingerprint)
        self._fingerprint_digest = hashlib.blake2b(json.dumps(self.fingerprint, sort_keys=True).encode(), digest_size=16).digest()
        os.makedirs(directory, exist_ok=True)
        info_path = os.path.join(directory, self.INFO_FILE)
        if not os.path.isfile(info_path):
            self._write_atomic(info_path, json.dumps(self.fingerprint, indent=2, sort_keys=True).encode(), exclusive=True)
        with open(info_path) as f:  # ours, or the one another process wrote first
            try:
                stored = json.load(f)
            except json.JSONDecodeError as e:
                raise TeacherCacheError(f"Teacher output cache: '{info_path}' is not valid JSON ({e}); delete the directory.") from e
        if stored != self.fingerprint:
            differ = sorted(k for k in set(stored) | set(self.fingerprint) if stored.get(k) != self.fingerprint.get(k))
            raise TeacherCacheError(
                f"Teacher output cache '{directory}' holds the outputs of another teacher (differs in {differ}). "
                "Use a new model.teacher_cache_dir for this teacher, or delete that directory."
            )
        self.hits = 0
        self.misses = 0
        self.last_batch_hits = 0
        self._batch_shapes: Dict[Tuple, Dict[str, torch.Size]] = {}
        self._warned = set()

    def __repr__(self):
        return f"TeacherOutputCache(directory='{self.directory}', hits={self.hits}, misses={self.misses})"

    def _warn_once(self, kind: str, message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            logger.warning(message)

    # ------------------------------------------------------------------ storage
    def image_key(self, image: torch.Tensor, precision: str = "") -> str:
        """Hash of a teacher input image (C, H, W) with its dtype and shape, this cache's teacher
        fingerprint and the ``precision`` the teacher runs in (:func:`teacher_precision`)."""
        digest = hashlib.blake2b(digest_size=20)
        digest.update(self._fingerprint_digest)
        digest.update(f"{precision}|{tuple(image.shape)}|{image.dtype}".encode())
        digest.update(_tensor_bytes(image))
        return digest.hexdigest()

    def _path(self, key: str) -> str:
        return os.path.join(self.directory, key[:2], key + ".pt")

    @staticmethod
    def _write_atomic(path: str, data: bytes, exclusive: bool = False) -> None:
        """Write ``data`` to a temporary file, then rename it to ``path`` (``exclusive``: link it,
        so an existing file is kept)."""
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, 0o644)
            if exclusive:
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    pass
            else:
                os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    def load(self, key: str) -> Optional[Dict[str, torch.Tensor]]:
        """The entry of ``key`` ({path: (C, h, w) CPU tensor}), or None if absent or unreadable."""
        path = self._path(key)
        if not os.path.isfile(path):
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # a truncated or foreign file: recompute and overwrite it
            self._warn_once("unreadable", f"Teacher output cache: unreadable entry '{path}' ({type(e).__name__}: {e}); recomputing it.")
            return None

    def save(self, key: str, entry: Mapping[str, torch.Tensor]) -> None:
        buffer = io.BytesIO()
        torch.save({k: v.detach().cpu().contiguous() for k, v in entry.items()}, buffer)
        try:
            self._write_atomic(self._path(key), buffer.getvalue())
        except OSError as e:  # e.g. a full disk: the features are used anyway, just not kept
            self._warn_once("write", f"Teacher output cache: could not write '{self._path(key)}' ({e}); training goes on uncached.")

    # ------------------------------------------------------------------ teacher forward
    def run(
        self,
        teacher: FrozenTeacher,
        fn: Callable,
        recorder: FeatureRecorder,
        inputs: List[dict],
        padded_size: Optional[Sequence[int]] = None,
        output_keys: Optional[Sequence[str]] = None,
        record_keys: Optional[Mapping[str, Optional[Sequence[str]]]] = None,
    ) -> Tuple[Dict[str, torch.Tensor], Dict[str, object]]:
        """The teacher's backbone outputs and recorded features for a batch, from the cache where possible.

        Args:
            teacher: the frozen teacher; ``fn(teacher.model, inputs, padded_size)`` is its
                backbone forward (:func:`kd_core.meta_arch.run_backbone`).
            recorder: the teacher's :class:`FeatureRecorder` (its records are cached too).
            inputs: the teacher's per-image dicts; ``image`` is the (C, H, W) input tensor.
            padded_size: pad the batch to at least (H, W), as ``fn`` does.
            output_keys: backbone outputs to return (None = all, () = none).
            record_keys: per recorded module whose output is a dict, the keys to keep (None = all).
        Returns:
            (outputs, records) as the uncached forward gives them: (B, C, H_l, W_l) maps of the
            batch's padded size on the teacher's device, each image's features at the top left.
        """
        shapes = self._shapes_for(teacher, fn, recorder, inputs, padded_size, output_keys, record_keys)
        precision = teacher_precision(teacher)
        keys = [self.image_key(x["image"], precision) for x in inputs]
        entries, missing = [], 0
        for x, key in zip(inputs, keys):
            entry = self.load(key)
            if entry is None or not set(shapes) <= set(entry):
                with recorder.record() as records:
                    outputs = teacher.run(fn, [x], None)
                fresh = {k: v[0] for k, v in _flatten(outputs, records, output_keys, record_keys).items()}
                entry = {**(entry or {}), **fresh}  # keep what other configurations stored
                self.save(key, entry)
                missing += 1
            entries.append(entry)
        self.last_batch_hits = len(inputs) - missing
        self.hits += self.last_batch_hits
        self.misses += missing

        device = teacher.device
        batch = {}
        for path, shape in shapes.items():
            maps = torch.zeros((len(inputs),) + tuple(shape[1:]), dtype=entries[0][path].dtype, device=device)
            for i, entry in enumerate(entries):
                t = entry[path]
                h, w = min(t.shape[-2], shape[-2]), min(t.shape[-1], shape[-1])
                maps[i, :, :h, :w] = t[:, :h, :w].to(device, non_blocking=True)
            batch[path] = maps
        return _unflatten(batch)

    def _shapes_for(self, teacher, fn, recorder, inputs, padded_size, output_keys, record_keys) -> Dict[str, torch.Size]:
        """Every map the call returns, with its shape for this batch as the batched forward makes it:
        the teacher's preprocessing pads to Detectron2's ``ImageList.from_tensors`` size (the
        backbone's size divisibility and padding constraints), then ``fn`` pads to at least
        ``padded_size``. Measured once per size and key set, with a forward of a blank image."""
        backbone = teacher.model.backbone
        size = tuple(
            int(v)
            for v in ImageList.from_tensors(
                [x["image"] for x in inputs], backbone.size_divisibility, padding_constraints=backbone.padding_constraints
            ).tensor.shape[-2:]
        )
        target = None if padded_size is None else (int(padded_size[0]), int(padded_size[1]))
        memo_key = (size, target, repr(None if output_keys is None else tuple(output_keys)), repr(record_keys))
        if memo_key not in self._batch_shapes:
            image = inputs[0]["image"]
            blank = [{"image": torch.zeros((image.shape[0],) + size, dtype=image.dtype)}]
            with recorder.record() as records:
                outputs = teacher.run(fn, blank, target)
            flat = _flatten(outputs, records, output_keys, record_keys)
            self._batch_shapes[memo_key] = {k: v.shape for k, v in flat.items()}
        return self._batch_shapes[memo_key]
