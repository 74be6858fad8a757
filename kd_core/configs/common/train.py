# Training settings read by tools/lazyconfig_train_net.py (Detectron2's common/train.py plus KD options).
train = dict(
    output_dir="./output",
    init_checkpoint="",
    max_iter=90000,
    # Automatic Mixed Precision: fp16 autocast + gradient scaling on CUDA, bfloat16 autocast on CPU
    amp=dict(enabled=False),
    # channels_last (NHWC) weights and activations for the convolutions: faster oneDNN / cuDNN kernels
    # for CNN detectors (2-core AMX CPU with bf16: 1.2-1.4x per step for the tiny RetinaNet student)
    channels_last=False,
    ddp=dict(broadcast_buffers=False, find_unused_parameters=False, fp16_compression=False),
    checkpointer=dict(period=5000, max_to_keep=100),
    eval_period=5000,
    log_period=20,
    device="cuda",
    # Gradient clipping by total norm over the student's (and distillers') parameters.
    clip_grad=dict(enabled=False, max_norm=0.1, norm_type=2.0),
    seed=-1,
)
