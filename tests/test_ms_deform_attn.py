"""Multi-scale deformable attention: vectorized grid_sample version vs an explicit reference."""
import pytest
import torch

from detrdistill.modeling.ms_deform_attn import (
    MultiScaleDeformableAttention,
    multi_scale_deformable_attention,
    multi_scale_deformable_attention_reference,
)

SHAPES = [(6, 8), (3, 4), (2, 2), (1, 1)]


def random_inputs(bs=2, heads=2, head_dim=4, queries=7, points=3, shapes=SHAPES, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    tokens = sum(h * w for h, w in shapes)
    value = torch.randn(bs, tokens, heads, head_dim, generator=g, dtype=dtype)
    # Locations partly outside [0, 1] to exercise zero padding.
    locations = torch.rand(bs, queries, heads, len(shapes), points, 2, generator=g, dtype=dtype) * 1.4 - 0.2
    weights = torch.rand(bs, queries, heads, len(shapes), points, generator=g, dtype=dtype)
    weights = weights / weights.flatten(-2).sum(-1)[..., None, None]
    return value, locations, weights


@pytest.mark.parametrize("seed,points", [(0, 1), (1, 3), (2, 4)])
def test_vectorized_matches_reference(seed, points):
    value, locations, weights = random_inputs(points=points, seed=seed)
    fast = multi_scale_deformable_attention(value, SHAPES, locations, weights)
    ref = multi_scale_deformable_attention_reference(value, SHAPES, locations, weights)
    diff = (fast.double() - ref).abs().max().item()
    print(f"ms_deform_attn forward max abs diff (seed {seed}, {points} points): {diff:.3e}")
    assert fast.shape == (2, 7, 2 * 4)
    assert diff < 1e-5


def test_gradients_match_reference():
    value, locations, weights = random_inputs(seed=3)
    inputs_fast = [t.clone().requires_grad_(True) for t in (value, locations, weights)]
    inputs_ref = [t.clone().double().requires_grad_(True) for t in (value, locations, weights)]
    g = torch.randn(2, 7, 8, generator=torch.Generator().manual_seed(4))
    (multi_scale_deformable_attention(inputs_fast[0], SHAPES, inputs_fast[1], inputs_fast[2]) * g).sum().backward()
    (multi_scale_deformable_attention_reference(inputs_ref[0], SHAPES, inputs_ref[1], inputs_ref[2]) * g.double()).sum().backward()
    for name, a, b in zip(("value", "locations", "weights"), inputs_fast, inputs_ref):
        diff = (a.grad.double() - b.grad).abs().max().item()
        print(f"ms_deform_attn grad[{name}] max abs diff: {diff:.3e}")
        assert diff < 1e-4, name


def test_pixel_center_sampling_is_exact():
    """A location at a pixel center returns that pixel's value (align_corners=False convention)."""
    shapes = [(4, 5)]
    value = torch.arange(20, dtype=torch.float32).view(1, 20, 1, 1)
    i, j = 2, 3
    loc = torch.tensor([(j + 0.5) / 5, (i + 0.5) / 4]).view(1, 1, 1, 1, 1, 2)
    out = multi_scale_deformable_attention(value, shapes, loc, torch.ones(1, 1, 1, 1, 1))
    assert out.item() == pytest.approx(i * 5 + j)
    outside = multi_scale_deformable_attention(value, shapes, torch.full_like(loc, 1.5), torch.ones(1, 1, 1, 1, 1))
    assert outside.item() == 0.0


def test_autocast_computes_in_float32():
    value, locations, weights = random_inputs(seed=5)
    value_bf16 = value.bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = multi_scale_deformable_attention(value_bf16, SHAPES, locations.bfloat16(), weights.bfloat16())
    assert out.dtype == torch.bfloat16
    exact = multi_scale_deformable_attention(
        value_bf16.float(), SHAPES, locations.bfloat16().float(), weights.bfloat16().float()
    )
    # Only the final rounding to bfloat16 differs from a float32 computation.
    assert torch.allclose(out.float(), exact, rtol=1e-2, atol=1e-2)
    assert torch.equal(out, exact.bfloat16())

    module = MultiScaleDeformableAttention(embed_dim=32, num_heads=4, num_levels=4, num_points=2)
    query = torch.randn(2, 5, 32)
    memory = torch.randn(2, sum(h * w for h, w in SHAPES), 32)
    refs = torch.rand(2, 5, 4, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = module(query, refs, memory, SHAPES)
    assert torch.isfinite(y.float()).all()


def test_module_padding_mask_and_box_references():
    torch.manual_seed(0)
    module = MultiScaleDeformableAttention(embed_dim=32, num_heads=4, num_levels=4, num_points=2)
    with torch.no_grad():
        module.sampling_offsets.weight.normal_(0, 0.1)
        module.attention_weights.weight.normal_(0, 0.1)
    tokens = sum(h * w for h, w in SHAPES)
    query = torch.randn(2, 5, 32)
    memory = torch.randn(2, tokens, 32)
    mask = torch.zeros(2, tokens, dtype=torch.bool)
    mask[1, 10:30] = True
    refs = torch.rand(2, 5, 4, 2)
    out = module(query, refs, memory, SHAPES, mask)
    changed = memory.clone()
    changed[1, 10:30] += 100.0  # padded tokens: must not matter
    assert torch.allclose(module(query, refs, changed, SHAPES, mask), out, atol=1e-5)
    boxes = torch.cat([torch.rand(2, 5, 4, 2) * 0.5 + 0.25, torch.rand(2, 5, 4, 2) * 0.3], -1)
    assert module(query, boxes, memory, SHAPES, mask).shape == (2, 5, 32)
    with pytest.raises(ValueError, match="2 or 4"):
        module(query, torch.rand(2, 5, 4, 3), memory, SHAPES)


def test_shape_errors_are_explicit():
    value, locations, weights = random_inputs()
    with pytest.raises(ValueError, match="spatial_shapes"):
        multi_scale_deformable_attention(value, SHAPES[:3], locations, weights)
    with pytest.raises(ValueError, match="attention_weights"):
        multi_scale_deformable_attention(value, SHAPES, locations, weights[..., :1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available: CPU/CUDA agreement not checked")
def test_cuda_matches_cpu():
    value, locations, weights = random_inputs(bs=2, heads=8, head_dim=32, queries=300, points=4, seed=6)
    cpu = multi_scale_deformable_attention(value, SHAPES, locations, weights)
    gpu = multi_scale_deformable_attention(value.cuda(), SHAPES, locations.cuda(), weights.cuda())
    diff = (gpu.cpu() - cpu).abs().max().item()
    print(f"ms_deform_attn CUDA vs CPU max abs diff: {diff:.3e}")
    assert diff < 1e-4
    with torch.autocast("cuda", dtype=torch.float16):
        half = multi_scale_deformable_attention(value.cuda().half(), SHAPES, locations.cuda().half(), weights.cuda().half())
    assert half.dtype == torch.float16 and torch.isfinite(half).all()
