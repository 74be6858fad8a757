"""Convert detrex Conditional DETR checkpoints to :class:`detrdistill.modeling.conditional_detr.ConditionalDETR`.

detrex (IDEA-Research/detrex, ``projects/conditional_detr``) builds its layers from generic
blocks (``layers.{i}.attentions.{j}``, ``ffns.0.layers...``, ``norms.{k}``); this project
names them by role. Everything else (backbone, ``input_proj``, ``query_embed``,
``class_embed``, ``bbox_embed``, the attention projections, ``query_scale``,
``ref_point_head``) keeps detrex's name. The detrex model must use ReLU FFNs and no encoder
post-norm, as in detrex's ``conditional_detr_r50`` config.

Usage::

    python -m detrdistill.converters.detrex_conditional --input detrex_ckpt.pth --output ours.pth

then ``train.init_checkpoint=ours.pth`` (the converted file holds ``{"model": state_dict}``).
"""

import argparse
import re
from typing import Dict, List, Mapping, Tuple

import torch

from .detrex import DetrexConversionError

__all__ = [
    "convert_detrex_conditional_detr_state_dict",
    "to_detrex_conditional_detr_state_dict",
    "convert_detrex_conditional_detr_checkpoint",
]

# (detrex pattern, our replacement); applied with re.fullmatch to every key, first match wins.
_ENCODER = r"transformer\.encoder\.layers\.(\d+)\."
_DECODER = r"transformer\.decoder\.layers\.(\d+)\."
_DETREX_TO_OURS: List[Tuple[str, str]] = [
    (_ENCODER + r"attentions\.0\.attn\.(.+)", r"transformer.encoder_layers.\1.self_attn.\2"),
    (_ENCODER + r"norms\.0\.(weight|bias)", r"transformer.encoder_layers.\1.self_attn_norm.\2"),
    (_ENCODER + r"norms\.1\.(weight|bias)", r"transformer.encoder_layers.\1.ffn_norm.\2"),
    (_ENCODER + r"ffns\.0\.layers\.0\.0\.(weight|bias)", r"transformer.encoder_layers.\1.ffn.linear1.\2"),
    (_ENCODER + r"ffns\.0\.layers\.1\.(weight|bias)", r"transformer.encoder_layers.\1.ffn.linear2.\2"),
    (_DECODER + r"attentions\.0\.(\w+)\.(weight|bias)", r"transformer.decoder_layers.\1.self_attn.\2.\3"),
    (_DECODER + r"attentions\.1\.(\w+)\.(weight|bias)", r"transformer.decoder_layers.\1.cross_attn.\2.\3"),
    (_DECODER + r"norms\.0\.(weight|bias)", r"transformer.decoder_layers.\1.self_attn_norm.\2"),
    (_DECODER + r"norms\.1\.(weight|bias)", r"transformer.decoder_layers.\1.cross_attn_norm.\2"),
    (_DECODER + r"norms\.2\.(weight|bias)", r"transformer.decoder_layers.\1.ffn_norm.\2"),
    (_DECODER + r"ffns\.0\.layers\.0\.0\.(weight|bias)", r"transformer.decoder_layers.\1.ffn.linear1.\2"),
    (_DECODER + r"ffns\.0\.layers\.1\.(weight|bias)", r"transformer.decoder_layers.\1.ffn.linear2.\2"),
    (r"transformer\.decoder\.(query_scale|ref_point_head)\.(.+)", r"transformer.\1.\2"),
    (r"transformer\.decoder\.post_norm_layer\.(weight|bias)", r"transformer.decoder_norm.\1"),
    (r"(backbone|input_proj|query_embed|class_embed|bbox_embed)\.(.+)", r"\1.\2"),
]

_OURS_TO_DETREX: List[Tuple[str, str]] = [
    (r"transformer\.encoder_layers\.(\d+)\.self_attn\.(.+)", r"transformer.encoder.layers.\1.attentions.0.attn.\2"),
    (r"transformer\.encoder_layers\.(\d+)\.self_attn_norm\.(.+)", r"transformer.encoder.layers.\1.norms.0.\2"),
    (r"transformer\.encoder_layers\.(\d+)\.ffn_norm\.(.+)", r"transformer.encoder.layers.\1.norms.1.\2"),
    (r"transformer\.encoder_layers\.(\d+)\.ffn\.linear1\.(.+)", r"transformer.encoder.layers.\1.ffns.0.layers.0.0.\2"),
    (r"transformer\.encoder_layers\.(\d+)\.ffn\.linear2\.(.+)", r"transformer.encoder.layers.\1.ffns.0.layers.1.\2"),
    (
        r"transformer\.decoder_layers\.(\d+)\.self_attn\.(\w+)\.(.+)",
        r"transformer.decoder.layers.\1.attentions.0.\2.\3",
    ),
    (
        r"transformer\.decoder_layers\.(\d+)\.cross_attn\.(\w+)\.(.+)",
        r"transformer.decoder.layers.\1.attentions.1.\2.\3",
    ),
    (r"transformer\.decoder_layers\.(\d+)\.self_attn_norm\.(.+)", r"transformer.decoder.layers.\1.norms.0.\2"),
    (r"transformer\.decoder_layers\.(\d+)\.cross_attn_norm\.(.+)", r"transformer.decoder.layers.\1.norms.1.\2"),
    (r"transformer\.decoder_layers\.(\d+)\.ffn_norm\.(.+)", r"transformer.decoder.layers.\1.norms.2.\2"),
    (r"transformer\.decoder_layers\.(\d+)\.ffn\.linear1\.(.+)", r"transformer.decoder.layers.\1.ffns.0.layers.0.0.\2"),
    (r"transformer\.decoder_layers\.(\d+)\.ffn\.linear2\.(.+)", r"transformer.decoder.layers.\1.ffns.0.layers.1.\2"),
    (r"transformer\.(query_scale|ref_point_head)\.(.+)", r"transformer.decoder.\1.\2"),
    (r"transformer\.decoder_norm\.(.+)", r"transformer.decoder.post_norm_layer.\1"),
    (r"(backbone|input_proj|query_embed|class_embed|bbox_embed)\.(.+)", r"\1.\2"),
]

# detrex keys that mean the checkpoint's architecture differs from ours.
_UNSUPPORTED = [
    (r"transformer\.encoder\.post_norm_layer\..+", "an encoder post-norm (detrex post_norm=True in the encoder)"),
    (r"transformer\.(en|de)coder\.layers\.\d+\.ffns\.0\.layers\.0\.1\..+", "a parametric FFN activation (e.g. PReLU)"),
]


def _rename(state_dict: Mapping[str, torch.Tensor], rules: List[Tuple[str, str]], what: str) -> Dict[str, torch.Tensor]:
    out, unknown = {}, []
    for key, value in state_dict.items():
        for pattern, replacement in rules:
            match = re.fullmatch(pattern, key)
            if match:
                new_key = match.expand(replacement)
                if new_key in out:
                    raise DetrexConversionError(f"{what}: two keys map to '{new_key}'.")
                out[new_key] = value
                break
        else:
            unknown.append(key)
    if unknown:
        shown = ", ".join(unknown[:10]) + (f", ... ({len(unknown)} in all)" if len(unknown) > 10 else "")
        raise DetrexConversionError(f"{what}: no mapping for keys: {shown}.")
    return out


def convert_detrex_conditional_detr_state_dict(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """detrex ``ConditionalDETR`` state dict -> ``ConditionalDETR`` state dict of this project.

    A leading ``"module."`` (DDP) is stripped. Raises :class:`DetrexConversionError` naming the
    keys that have no counterpart (e.g. a different architecture), so nothing is dropped silently.
    Tensors are shared, not copied. Outputs match detrex's at ``hidden_dim=256`` (detrex's sine
    embedding of the reference points is fixed at 128 features per coordinate).
    """
    state_dict = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state_dict.items()}
    for pattern, reason in _UNSUPPORTED:
        bad = [k for k in state_dict if re.fullmatch(pattern, k)]
        if bad:
            raise DetrexConversionError(
                f"detrex checkpoint uses {reason} ({bad[0]}), which this ConditionalDETR does not have."
            )
    return _rename(state_dict, _DETREX_TO_OURS, "convert_detrex_conditional_detr_state_dict")


def to_detrex_conditional_detr_state_dict(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Inverse of :func:`convert_detrex_conditional_detr_state_dict`."""
    return _rename(state_dict, _OURS_TO_DETREX, "to_detrex_conditional_detr_state_dict")


def convert_detrex_conditional_detr_checkpoint(
    input_path: str, output_path: str, allow_pickle: bool = False
) -> Dict[str, torch.Tensor]:
    """Read a detrex checkpoint (``{"model": ...}`` or a bare state dict), write ``{"model": converted}``.

    Args:
        allow_pickle: load with ``torch.load(weights_only=False)``; only for trusted files.
    Returns:
        the converted state dict.
    """
    checkpoint = torch.load(input_path, map_location="cpu", weights_only=not allow_pickle)
    state_dict = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, dict):
        raise ValueError(f"{input_path} holds neither a state dict nor a {{'model': state_dict}} checkpoint.")
    converted = convert_detrex_conditional_detr_state_dict(state_dict)
    torch.save({"model": converted}, output_path)
    return converted


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", required=True, help="detrex Conditional DETR checkpoint (.pth)")
    parser.add_argument("--output", required=True, help="where to write the converted checkpoint")
    parser.add_argument(
        "--allow-pickle", action="store_true", help="torch.load(weights_only=False); only for trusted checkpoints"
    )
    args = parser.parse_args(argv)
    converted = convert_detrex_conditional_detr_checkpoint(args.input, args.output, args.allow_pickle)
    print(f"Converted {len(converted)} tensors -> {args.output}")


if __name__ == "__main__":
    main()
