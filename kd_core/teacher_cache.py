"""Disk cache of the frozen teacher's backbone outputs, keyed by the exact teacher input.

A feature-distillation step needs the teacher's features of the augmented image it trains on.
Augmentation (random resize, flip, crop) makes every view a different input, so the cache key is
a hash of the teacher's input image itself (the uint8 tensor the mapper produced): any
augmentation is handled correctly, a view not seen before is simply a miss. How often views repeat
decides what the cache saves: small datasets, few resize choices and long schedules (or several
runs with the same teacher and seed: ablations) hit often; random crops almost never do.

On a miss the teacher runs on that image alone, padded to its own size divisibility, and the
outputs are written to disk; cached or fresh, every image's features are then pasted into
zero-filled maps of the batch's padded size. So with the cache on, each image's features are the
teacher's on that image alone: they equal the batched teacher's except within the receptive field
of the batch padding (bottom/right borders), where the batched teacher saw the other images'
padding, and the padded area itself is zero instead of the teacher's response to padding.

The directory belongs to one teacher: its fingerprint (weights, architecture, pixel statistics,
precision) is stored in ``cache_info.json`` and checked when a model opens the directory.
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

__all__ = ["TeacherOutputCache", "TeacherCacheError", "teacher_fingerprint"]

logger = logging.getLogger(__name__)

_OUTPUTS = "outputs"
_RECORDS = "records"


class TeacherCacheError(RuntimeError):
    """The cache directory belongs to another teacher, or a teacher output cannot be cached."""


def teacher_fingerprint(teacher: FrozenTeacher) -> Dict[str, str]:
    """What the cached outputs depend on: a hash of every weight and buffer, of the module tree
    (layer types and shapes), the preprocessing (pixel mean/std, input format) and the precision."""
    model = teacher.model
    weights = hashlib.blake2b(digest_size=16)
    for name, tensor in model.state_dict().items():
        weights.update(name.encode())
        weights.update(str(tensor.dtype).encode())
        weights.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    preprocessing = {
        k: getattr(model, k).detach().cpu().flatten().tolist() if torch.is_tensor(getattr(model, k, None)) else getattr(model, k, None)
        for k in ("pixel_mean", "pixel_std", "input_format")
    }
    return {
        "model": type(model).__name__,
        "architecture": hashlib.blake2b(repr(model).encode(), digest_size=16).hexdigest(),
        "weights": weights.hexdigest(),
        "preprocessing": json.dumps(preprocessing, sort_keys=True),
        "autocast_dtype": str(teacher.autocast_dtype),
    }


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

    Entries are ``<directory>/<key[:2]>/<key>.pt`` files written atomically (a temporary file,
    then a rename), so an interrupted run or several processes writing at once leave no torn
    entry; an unreadable entry is recomputed and rewritten. ``hits``/``misses`` count images.
    """

    INFO_FILE = "cache_info.json"

    def __init__(self, directory: str, fingerprint: Mapping[str, str]):
        if not directory:
            raise ValueError("TeacherOutputCache needs a directory.")
        self.directory = directory
        self.fingerprint = dict(fingerprint)
        os.makedirs(directory, exist_ok=True)
        info_path = os.path.join(directory, self.INFO_FILE)
        if os.path.isfile(info_path):
            with open(info_path) as f:
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
        else:
            self._write_atomic(info_path, json.dumps(self.fingerprint, indent=2, sort_keys=True).encode())
        self.hits = 0
        self.misses = 0
        self.last_batch_hits = 0
        self._batch_shapes: Dict[Tuple, Dict[str, torch.Size]] = {}
        self._warned_unreadable = False

    def __repr__(self):
        return f"TeacherOutputCache(directory='{self.directory}', hits={self.hits}, misses={self.misses})"

    # ------------------------------------------------------------------ storage
    @staticmethod
    def image_key(image: torch.Tensor) -> str:
        """Hash of a teacher input image (C, H, W), its dtype and shape included."""
        digest = hashlib.blake2b(digest_size=20)
        digest.update(f"{tuple(image.shape)}{image.dtype}".encode())
        digest.update(image.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()

    def _path(self, key: str) -> str:
        return os.path.join(self.directory, key[:2], key + ".pt")

    @staticmethod
    def _write_atomic(path: str, data: bytes) -> None:
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise

    def load(self, key: str) -> Optional[Dict[str, torch.Tensor]]:
        """The entry of ``key`` ({path: (C, h, w) CPU tensor}), or None if absent or unreadable."""
        path = self._path(key)
        if not os.path.isfile(path):
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # a truncated or foreign file: recompute and overwrite it
            if not self._warned_unreadable:
                logger.warning(f"Teacher output cache: unreadable entry '{path}' ({type(e).__name__}: {e}); recomputing it.")
                self._warned_unreadable = True
            return None

    def save(self, key: str, entry: Mapping[str, torch.Tensor]) -> None:
        buffer = io.BytesIO()
        torch.save({k: v.detach().cpu().contiguous() for k, v in entry.items()}, buffer)
        self._write_atomic(self._path(key), buffer.getvalue())

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
            output_keys: backbone outputs to return (None = all).
            record_keys: per recorded module whose output is a dict, the keys to keep (None = all).
        Returns:
            (outputs, records) as the uncached forward gives them: (B, C, H_l, W_l) maps of the
            batch's padded size on the teacher's device, each image's features at the top left.
        """
        entries, missing = [], []
        keys = [self.image_key(x["image"]) for x in inputs]
        for i, key in enumerate(keys):
            entry = self.load(key)
            if entry is not None and not self._complete(entry, output_keys, record_keys):
                entry = None  # written for other distillers / levels: recompute
            entries.append(entry)
            if entry is None:
                missing.append(i)
        for i in missing:
            with recorder.record() as records:
                outputs = teacher.run(fn, [inputs[i]], None)
            flat = _flatten(outputs, records, output_keys, record_keys)
            entries[i] = {k: v[0] for k, v in flat.items()}
            self.save(keys[i], entries[i])
        self.last_batch_hits = len(inputs) - len(missing)
        self.hits += self.last_batch_hits
        self.misses += len(missing)

        shapes = self._shapes_for(teacher, fn, recorder, inputs, padded_size, output_keys, record_keys)
        device = teacher.device
        batch = {}
        for path, shape in shapes.items():
            first = entries[0][path]
            maps = torch.zeros((len(inputs),) + tuple(shape[1:]), dtype=first.dtype, device=device)
            for i, entry in enumerate(entries):
                t = entry[path]
                h, w = min(t.shape[-2], shape[-2]), min(t.shape[-1], shape[-1])
                maps[i, :, :h, :w] = t[:, :h, :w].to(device, non_blocking=True)
            batch[path] = maps
        return _unflatten(batch)

    @staticmethod
    def _complete(entry, output_keys, record_keys) -> bool:
        if output_keys is not None and any(f"{_OUTPUTS}/{k}" not in entry for k in output_keys):
            return False
        for module, keys in (record_keys or {}).items():
            if keys is None:
                if not any(p == f"{_RECORDS}/{module}" or p.startswith(f"{_RECORDS}/{module}/") for p in entry):
                    return False
            elif any(f"{_RECORDS}/{module}/{k}" not in entry for k in keys):
                return False
        return True

    def _shapes_for(self, teacher, fn, recorder, inputs, padded_size, output_keys, record_keys) -> Dict[str, torch.Size]:
        """Shapes of every cached map for this batch, as the batched forward makes them: the
        teacher's preprocessing pads to Detectron2's ``ImageList.from_tensors`` size (the backbone's
        size divisibility and padding constraints), then ``fn`` pads to at least ``padded_size``.
        Measured once per size, with a forward of a blank image of that size."""
        backbone = teacher.model.backbone
        size = tuple(
            int(v)
            for v in ImageList.from_tensors(
                [x["image"] for x in inputs], backbone.size_divisibility, padding_constraints=backbone.padding_constraints
            ).tensor.shape[-2:]
        )
        target = None if padded_size is None else (int(padded_size[0]), int(padded_size[1]))
        memo_key = (size, target, tuple(output_keys or ()), repr(record_keys))
        if memo_key not in self._batch_shapes:
            image = inputs[0]["image"]
            blank = [{"image": torch.zeros((image.shape[0],) + size, dtype=image.dtype)}]
            with recorder.record() as records:
                outputs = teacher.run(fn, blank, target)
            flat = _flatten(outputs, records, output_keys, record_keys)
            self._batch_shapes[memo_key] = {k: v.shape for k, v in flat.items()}
        return self._batch_shapes[memo_key]
