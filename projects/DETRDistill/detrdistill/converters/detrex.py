"""Convert detrex Deformable DETR checkpoints to :class:`detrdistill.modeling.DeformableDETR`.

detrex (IDEA-Research/detrex, ``projects/deformable_detr``) builds the transformer from generic
layers (``attentions``/``norms``/``ffns`` lists) and a ``ChannelMapper`` neck; our model names
each sub-module by role. The backbone (Detectron2 ResNet) is named identically. Duplicate
head entries (detrex keeps one ``class_embed.k``/``bbox_embed.k`` per decoder layer even when
they are the same module, and repeats them under ``transformer.decoder``) are collapsed.

Supported variants: plain, ``with_box_refine`` and ``as_two_stage`` Deformable DETR.
"""
import re
from collections import OrderedDict
from typing import Dict, Mapping, Optional

import torch

__all__ = ["convert_detrex_state_dict", "DetrexConversionError"]


class DetrexConversionError(ValueError):
    """The state dict has keys this converter does not know, or inconsistent heads."""


# (pattern, replacement) applied to every key, first match wins.
_ENCODER_LAYER = [
    (r"attentions\.0\.", "self_attn."),
    (r"norms\.0\.", "self_attn_norm."),
    (r"norms\.1\.", "ffn_norm."),
    (r"ffns\.0\.layers\.0\.0\.", "ffn.linear1."),
    (r"ffns\.0\.layers\.1\.", "ffn.linear2."),
]
_DECODER_LAYER = [
    (r"attentions\.0\.attn\.", "self_attn."),
    (r"attentions\.1\.", "cross_attn."),
    (r"norms\.0\.", "self_attn_norm."),
    (r"norms\.1\.", "cross_attn_norm."),
    (r"norms\.2\.", "ffn_norm."),
    (r"ffns\.0\.layers\.0\.0\.", "ffn.linear1."),
    (r"ffns\.0\.layers\.1\.", "ffn.linear2."),
]
_TRANSFORMER_TOP = {
    "transformer.level_embeds": "transformer.level_embed",
}
_TRANSFORMER_MODULES = ("reference_points", "enc_output", "enc_output_norm", "pos_trans", "pos_trans_norm")


def _convert_layer(rest: str, rules) -> Optional[str]:
    for pattern, replacement in rules:
        if re.match(pattern, rest):
            return re.sub(pattern, replacement, rest, count=1)
    return None


def convert_detrex_state_dict(
    state_dict: Mapping[str, torch.Tensor], with_box_refine: Optional[bool] = None
) -> Dict[str, torch.Tensor]:
    """Rename a detrex Deformable DETR state dict to ours.

    Args:
        state_dict: detrex model state dict (``checkpoint["model"]``), optionally with a
            "module." prefix.
        with_box_refine: whether the checkpoint uses per-layer heads; by default inferred from
            the presence of ``transformer.decoder.bbox_embed.*`` (detrex stores the refinement
            heads there too).
    Returns:
        a new ``OrderedDict`` with our key names (tensors are shared, not copied).
    Raises:
        DetrexConversionError: on keys not belonging to a detrex Deformable DETR, or when
            heads expected to be shared differ.
    """
    sd = OrderedDict((k[len("module.") :] if k.startswith("module.") else k, v) for k, v in state_dict.items())
    if with_box_refine is None:
        with_box_refine = any(k.startswith("transformer.decoder.bbox_embed.") for k in sd)
    num_neck_convs = len({m.group(1) for k in sd for m in [re.match(r"neck\.convs\.(\d+)\.", k)] if m})

    out = OrderedDict()
    unknown = []
    shared_heads = {}
    for key, value in sd.items():
        new_key = None
        if key.startswith("backbone."):
            new_key = key
        elif key.startswith("transformer.decoder.bbox_embed.") or key.startswith("transformer.decoder.class_embed."):
            continue  # aliases of the top-level heads
        elif key == "query_embedding.weight":
            new_key = "query_embed.weight"
        elif key in _TRANSFORMER_TOP:
            new_key = _TRANSFORMER_TOP[key]
        elif any(key.startswith(f"transformer.{m}.") for m in _TRANSFORMER_MODULES):
            new_key = key
        elif m := re.match(r"neck\.(convs|extra_convs)\.(\d+)\.(conv|norm)\.(.+)$", key):
            level = int(m.group(2)) + (num_neck_convs if m.group(1) == "extra_convs" else 0)
            new_key = f"input_proj.levels.{level}.{0 if m.group(3) == 'conv' else 1}.{m.group(4)}"
        elif m := re.match(r"transformer\.encoder\.layers\.(\d+)\.(.+)$", key):
            rest = _convert_layer(m.group(2), _ENCODER_LAYER)
            new_key = f"transformer.encoder_layers.{m.group(1)}.{rest}" if rest else None
        elif m := re.match(r"transformer\.decoder\.layers\.(\d+)\.(.+)$", key):
            rest = _convert_layer(m.group(2), _DECODER_LAYER)
            new_key = f"transformer.decoder_layers.{m.group(1)}.{rest}" if rest else None
        elif m := re.match(r"(class_embed|bbox_embed)\.(\d+)\.(.+)$", key):
            if not with_box_refine:
                shared_heads.setdefault((m.group(1), m.group(3)), []).append((int(m.group(2)), value))
                continue
            new_key = key
        if new_key is None:
            unknown.append(key)
        else:
            out[new_key] = value
    if unknown:
        raise DetrexConversionError(
            f"{len(unknown)} keys are not part of a detrex Deformable DETR: {unknown[:10]}"
            + (" ..." if len(unknown) > 10 else "")
        )
    for (head, param), copies in sorted(shared_heads.items()):
        copies.sort(key=lambda c: c[0])
        first = copies[0][1]
        for idx, tensor in copies[1:]:
            if tensor.shape != first.shape or not torch.equal(tensor, first):
                raise DetrexConversionError(
                    f"{head}.{idx}.{param} differs from {head}.0.{param}: the checkpoint has per-layer heads; "
                    "convert with with_box_refine=True (and build the model with with_box_refine=True)."
                )
        out[f"{head}.0.{param}"] = first
    return out
