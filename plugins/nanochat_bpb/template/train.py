"""
GPT pretraining under a fixed time budget: the file the agent edits. Everything here is fair
game: the model, the optimizer, the hyperparameters and the training loop.

The harness runs it (`python prepare.py train`), gives it TIME_BUDGET seconds of training, and
afterwards computes val_bpb itself from the weights handed over with save_model(...).
"""

import functools
import gc
import math
import os
import time
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention

from prepare import (
    MAX_SEQ_LEN,
    TIME_BUDGET,
    Tokenizer,
    autocast,
    compute_dtype,
    get_device,
    make_dataloader,
    peak_flops,
    report_progress,
    save_model,
    synchronize,
    training_started,
)

# ---------------------------------------------------------------------------
# GPT model

@dataclass
class GPTConfig:
    sequence_len: int = 2048
    vocab_size: int = 8192
    n_layer: int = 8
    n_head: int = 4
    n_kv_head: int = 4
    n_embd: int = 512
    window_pattern: str = "SSSL"


def norm(x):
    """RMSNorm without a learned weight, in x's dtype: autocast off, because torch >= 2.10 would
    run it in fp32 under CUDA autocast where the original's torch (2.9) keeps bf16."""
    with torch.autocast(x.device.type, enabled=False):
        return F.rms_norm(x, (x.size(-1),))


def has_ve(layer_idx: int, n_layer: int) -> bool:
    """Value embeddings on alternating layers, the last layer always among them."""
    return layer_idx % 2 == (n_layer - 1) % 2


def window_sizes(config: GPTConfig) -> list[int]:
    """Attention window (in keys before the query) per layer: S = half context, L = full;
    the pattern repeats over the layers and the last layer always sees the full context."""
    long, short = config.sequence_len, config.sequence_len // 2
    sizes = [short if config.window_pattern[i % len(config.window_pattern)] == "S" else long
             for i in range(config.n_layer)]
    sizes[-1] = long
    return sizes


def apply_rotary_emb(x, cos, sin):
    d = cos.size(3)  # channel pairs; an odd head dimension's last channel is not rotated
    x1, x2, rest = x[..., :d], x[..., d:2 * d], x[..., 2 * d:]
    return torch.cat([x1 * cos + x2 * sin, x1 * (-sin) + x2 * cos, rest], 3)


def sliding_window_mask(window: int, T: int, device: torch.device):
    """Query i sees keys i - window .. i: a flex_attention BlockMask on CUDA, a boolean band
    for SDPA elsewhere (flex_attention has no backward on CPU)."""
    if device.type == "cuda":
        def band(b, h, q_idx, kv_idx):
            return (kv_idx <= q_idx) & (q_idx - kv_idx <= window)
        return create_block_mask(band, B=None, H=None, Q_LEN=T, KV_LEN=T, device=device)
    distance = torch.arange(T, device=device)[:, None] - torch.arange(T, device=device)[None, :]
    return (distance >= 0) & (distance <= window)


@functools.cache
def compiled_flex_attention():
    """flex_attention compiled for use outside a compiled model (made on first use: importing
    the compiler costs seconds that CPU runs need not pay)."""
    return torch.compile(flex_attention, dynamic=False)


def attention(q, k, v, mask):
    """Causal attention of (B, H, T, D) tensors; ``mask`` None means the full causal window."""
    if k.size(1) != q.size(1):  # grouped-query attention
        k = k.repeat_interleave(q.size(1) // k.size(1), dim=1)
        v = v.repeat_interleave(q.size(1) // v.size(1), dim=1)
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    if isinstance(mask, BlockMask):
        flex = flex_attention if torch.compiler.is_compiling() else compiled_flex_attention()
        return flex(q, k, v, block_mask=mask)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer_idx: int):
        super().__init__()
        self.n_head = config.n_head
        self.n_kv_head = config.n_kv_head
        self.head_dim = config.n_embd // config.n_head
        self.c_q = nn.Linear(config.n_embd, self.n_head * self.head_dim, bias=False)
        self.c_k = nn.Linear(config.n_embd, self.n_kv_head * self.head_dim, bias=False)
        self.c_v = nn.Linear(config.n_embd, self.n_kv_head * self.head_dim, bias=False)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=False)
        self.ve_gate_channels = 32
        self.ve_gate = (nn.Linear(self.ve_gate_channels, self.n_kv_head, bias=False)
                        if has_ve(layer_idx, config.n_layer) else None)

    def forward(self, x, ve, cos_sin, mask):
        B, T, C = x.size()
        q = self.c_q(x).view(B, T, self.n_head, self.head_dim)
        k = self.c_k(x).view(B, T, self.n_kv_head, self.head_dim)
        v = self.c_v(x).view(B, T, self.n_kv_head, self.head_dim)
        if ve is not None:  # value residual (ResFormer): mix in the layer's value embedding
            ve = ve.view(B, T, self.n_kv_head, self.head_dim)
            gate = 2 * torch.sigmoid(self.ve_gate(x[..., :self.ve_gate_channels]))
            v = v + gate.unsqueeze(-1) * ve
        cos, sin = cos_sin
        q, k = apply_rotary_emb(q, cos, sin), apply_rotary_emb(k, cos, sin)
        q, k = norm(q), norm(k)  # QK-norm
        y = attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), mask)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, -1))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=False)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=False)

    def forward(self, x):
        return self.c_proj(F.relu(self.c_fc(x)).square())


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer_idx: int):
        super().__init__()
        self.attn = CausalSelfAttention(config, layer_idx)
        self.mlp = MLP(config)

    def forward(self, x, ve, cos_sin, mask):
        x = x + self.attn(norm(x), ve, cos_sin, mask)
        return x + self.mlp(norm(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.window_sizes = window_sizes(config)
        self.transformer = nn.ModuleDict({
            "wte": nn.Embedding(config.vocab_size, config.n_embd),
            "h": nn.ModuleList([Block(config, i) for i in range(config.n_layer)]),
        })
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.resid_lambdas = nn.Parameter(torch.ones(config.n_layer))
        self.x0_lambdas = nn.Parameter(torch.zeros(config.n_layer))
        kv_dim = config.n_kv_head * (config.n_embd // config.n_head)
        self.value_embeds = nn.ModuleDict({
            str(i): nn.Embedding(config.vocab_size, kv_dim)
            for i in range(config.n_layer) if has_ve(i, config.n_layer)
        })
        self.rotary_seq_len = config.sequence_len * 10
        cos, sin = self._precompute_rotary_embeddings()
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self._masks = {}

    @torch.no_grad()
    def init_weights(self):
        n_embd = self.config.n_embd
        nn.init.normal_(self.transformer.wte.weight, mean=0.0, std=1.0)
        nn.init.normal_(self.lm_head.weight, mean=0.0, std=0.001)
        s = 3**0.5 * n_embd**-0.5  # uniform with the std of normal(0, n_embd**-0.5)
        for block in self.transformer.h:
            for linear in (block.attn.c_q, block.attn.c_k, block.attn.c_v, block.mlp.c_fc):
                nn.init.uniform_(linear.weight, -s, s)
            nn.init.zeros_(block.attn.c_proj.weight)
            nn.init.zeros_(block.mlp.c_proj.weight)
            if block.attn.ve_gate is not None:
                nn.init.zeros_(block.attn.ve_gate.weight)
        self.resid_lambdas.fill_(1.0)
        self.x0_lambdas.fill_(0.1)
        for ve in self.value_embeds.values():
            nn.init.uniform_(ve.weight, -s, s)
        self.cos, self.sin = self._precompute_rotary_embeddings()
        if compute_dtype(self.cos.device) == torch.bfloat16:  # embeddings are stored in bf16
            self.transformer.wte.to(dtype=torch.bfloat16)
            self.value_embeds.to(dtype=torch.bfloat16)

    def _precompute_rotary_embeddings(self, base: int = 10000):
        head_dim = self.config.n_embd // self.config.n_head
        device = self.transformer.wte.weight.device
        channels = torch.arange(0, head_dim - 1, 2, dtype=torch.float32, device=device)
        inv_freq = 1.0 / (base ** (channels / head_dim))
        t = torch.arange(self.rotary_seq_len, dtype=torch.float32, device=device)
        freqs = torch.outer(t, inv_freq)
        dtype = compute_dtype(device)
        return freqs.cos().to(dtype)[None, :, None, :], freqs.sin().to(dtype)[None, :, None, :]

    @torch.compiler.disable  # built once per shape, outside any compiled graph
    def attention_masks(self, T: int, device: torch.device) -> dict:
        key = (T, str(device))
        if key not in self._masks:
            self._masks[key] = {w: sliding_window_mask(w, T, device)
                                for w in set(self.window_sizes) if w < T}
        return self._masks[key]

    def estimate_flops(self) -> float:
        """FLOPs per token of a forward and backward pass: 6 per matmul weight plus attention."""
        nparams = sum(p.numel() for p in self.parameters())
        embeddings = self.transformer.wte.weight.numel() + sum(
            ve.weight.numel() for ve in self.value_embeds.values())
        scalars = self.resid_lambdas.numel() + self.x0_lambdas.numel()
        h, t = self.config.n_head, self.config.sequence_len
        q = self.config.n_embd // h
        attn_flops = sum(12 * h * q * min(window, t) for window in self.window_sizes)
        return 6 * (nparams - embeddings - scalars) + attn_flops

    def setup_optimizer(self, unembedding_lr, embedding_lr, matrix_lr, weight_decay, adam_betas,
                        scalar_lr, compile_steps=False):
        matrix_params = list(self.transformer.h.parameters())
        lr_scale = (self.config.n_embd / 768) ** -0.5  # AdamW lrs were tuned at width 768
        adamw = dict(kind="adamw", betas=adam_betas, eps=1e-10, weight_decay=0.0)
        groups = [
            dict(adamw, params=list(self.lm_head.parameters()), lr=unembedding_lr * lr_scale),
            dict(adamw, params=list(self.transformer.wte.parameters()), lr=embedding_lr * lr_scale),
            dict(adamw, params=list(self.value_embeds.parameters()), lr=embedding_lr * lr_scale),
            dict(adamw, params=[self.resid_lambdas], lr=scalar_lr * 0.01),
            dict(adamw, params=[self.x0_lambdas], lr=scalar_lr, betas=(0.96, 0.95)),
        ]
        for shape in sorted({p.shape for p in matrix_params}):
            groups.append(dict(kind="muon", params=[p for p in matrix_params if p.shape == shape],
                               lr=matrix_lr, momentum=0.95, beta2=0.95, weight_decay=weight_decay))
        optimizer = MuonAdamW([g for g in groups if g["params"]], compile_steps=compile_steps)
        for group in optimizer.param_groups:
            group["initial_lr"] = group["lr"]
        return optimizer

    def forward(self, idx, targets=None, reduction="mean"):
        B, T = idx.size()
        masks = self.attention_masks(T, idx.device)
        cos_sin = self.cos[:, :T], self.sin[:, :T]
        x = norm(self.transformer.wte(idx))
        x0 = x
        for i, block in enumerate(self.transformer.h):
            x = self.resid_lambdas[i] * x + self.x0_lambdas[i] * x0
            ve = self.value_embeds[str(i)](idx) if str(i) in self.value_embeds else None
            x = block(x, ve, cos_sin, masks.get(self.window_sizes[i]))
        logits = self.lm_head(norm(x)).float()
        softcap = 15
        logits = softcap * torch.tanh(logits / softcap)
        if targets is None:
            return logits
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1),
                               ignore_index=-1, reduction=reduction)


# ---------------------------------------------------------------------------
# Optimizer: Muon for the transformer's matrices, AdamW for everything else

POLAR_EXPRESS_COEFFS = [
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
]


def adamw_step(p, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay):
    p.mul_(1 - lr * weight_decay)
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.lerp_(grad.square(), 1 - beta2)
    denom = (exp_avg_sq / (1 - beta2**step)).sqrt() + eps
    p.add_(exp_avg / denom * (-lr / (1 - beta1**step)))


def muon_step(grads, params, momentum_buffer, second_moment, momentum, lr, weight_decay, beta2):
    """One Muon update of a stack of same-shape matrices (num, rows, cols), in place.

    As in the original, lr, weight decay and beta2 act in the update's dtype (bf16): beta2 0.95
    is 0.94921875 there."""
    lr, weight_decay, beta2 = (torch.as_tensor(v, dtype=torch.float32).to(torch.bfloat16)
                               for v in (lr, weight_decay, beta2))
    # Nesterov momentum
    momentum_buffer.lerp_(grads, 1 - momentum)
    update = grads.lerp_(momentum_buffer, momentum)
    # Polar express: drive every singular value towards 1, in bf16
    X = update.bfloat16()
    X = X / (X.norm(dim=(-2, -1), keepdim=True) * 1.02 + 1e-6)
    tall = X.size(-2) > X.size(-1)
    for a, b, c in POLAR_EXPRESS_COEFFS:
        A = X.mT @ X if tall else X @ X.mT
        B = b * A + c * (A @ A)
        X = a * X + (X @ B if tall else B @ X)
    # NorMuon: normalise each row (or column) by its second-moment EMA, keep the overall norm
    red_dim = -1 if X.size(-2) >= X.size(-1) else -2
    red_size = X.size(red_dim)
    v_mean = X.float().square().mean(dim=red_dim, keepdim=True)
    v_norm = (v_mean.sum(dim=(-2, -1), keepdim=True) * red_size).sqrt()
    second_moment += (v_mean.to(second_moment.dtype) - second_moment) * (1 - beta2)  # lerp
    step_size = second_moment.clamp_min(1e-10).rsqrt()
    new_norm = (v_mean * red_size * step_size.square()).sum(dim=(-2, -1), keepdim=True).sqrt()
    update = X * (step_size * (v_norm / new_norm.clamp_min(1e-10))).to(X.dtype)
    # Cautious weight decay: decay only where the update and the weight agree in sign
    agree = (update * params) >= 0
    params.sub_(lr * update + lr * weight_decay * params * agree)


class MuonAdamW(torch.optim.Optimizer):
    """Param groups of ``kind`` "adamw" (per tensor) or "muon" (one stack of equal shapes)."""

    def __init__(self, param_groups, compile_steps=False):
        super().__init__(param_groups, defaults={})
        self.compiled = compile_steps
        self._adamw = torch.compile(adamw_step, dynamic=False) if compile_steps else adamw_step
        self._muon = torch.compile(muon_step, dynamic=False) if compile_steps else muon_step
        self._scalars = {}

    def scalar(self, name: str, value: float):
        """Compiled steps get 0-D CPU tensors (a new lr does not recompile), eager ones floats."""
        if not self.compiled:
            return float(value)
        tensor = self._scalars.setdefault(name, torch.tensor(0.0, dtype=torch.float32))
        tensor.fill_(value)
        return tensor

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            if group["kind"] == "adamw":
                self._step_adamw(group)
            else:
                self._step_muon(group)

    def _step_adamw(self, group):
        s = self.scalar
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if not state:
                state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
            state["step"] += 1
            beta1, beta2 = group["betas"]
            self._adamw(p, p.grad, state["exp_avg"], state["exp_avg_sq"], s("step", state["step"]),
                        s("lr", group["lr"]), s("beta1", beta1), s("beta2", beta2),
                        s("eps", group["eps"]), s("wd", group["weight_decay"]))

    def _step_muon(self, group):
        params = group["params"]
        if params[0].grad is None:
            return
        state = self.state[params[0]]
        rows, cols = params[0].shape[-2:]
        if not state:
            stat_shape = (len(params), rows, 1) if rows >= cols else (len(params), 1, cols)
            state["momentum_buffer"] = torch.zeros(len(params), rows, cols, dtype=params[0].dtype,
                                                   device=params[0].device)
            state["second_moment"] = torch.zeros(stat_shape, dtype=torch.float32,
                                                 device=params[0].device)
        stacked = torch.stack(params)
        s = self.scalar
        self._muon(torch.stack([p.grad for p in params]), stacked, state["momentum_buffer"],
                   state["second_moment"], s("momentum", group["momentum"]),
                   s("muon_lr", group["lr"] * max(1.0, rows / cols) ** 0.5),
                   s("muon_wd", group["weight_decay"]), s("muon_beta2", group["beta2"]))
        torch._foreach_copy_(params, list(stacked.unbind(0)))


# ---------------------------------------------------------------------------
# Hyperparameters (edit them here; there are no command-line flags)

DEPTH = 8                     # transformer layers
ASPECT_RATIO = 64             # model width = DEPTH * ASPECT_RATIO, rounded up to whole heads
HEAD_DIM = 128                # width of one attention head
WINDOW_PATTERN = "SSSL"       # attention windows per layer: S = half the context, L = all of it
TOTAL_BATCH_SIZE = 2**19      # tokens per optimizer step
DEVICE_BATCH_SIZE = 128       # rows per forward pass; gradient accumulation makes up the rest
EMBEDDING_LR = 0.6            # AdamW lr of the token and value embeddings
UNEMBEDDING_LR = 0.004        # AdamW lr of lm_head
MATRIX_LR = 0.04              # Muon lr of the transformer matrices
SCALAR_LR = 0.5               # AdamW lr of the per-layer residual and x0 scalars
WEIGHT_DECAY = 0.2            # Muon's cautious weight decay, decaying linearly to 0
ADAM_BETAS = (0.8, 0.95)      # AdamW betas
WARMUP_RATIO = 0.0            # fraction of the budget warming the lr up
WARMDOWN_RATIO = 0.5          # fraction of the budget cooling the lr down at the end
FINAL_LR_FRAC = 0.0           # lr multiplier reached at the end of the warm-down
COMPILE = True                # torch.compile model and optimizer steps (on CUDA only)


def get_lr_multiplier(progress: float) -> float:
    if progress < WARMUP_RATIO:
        return progress / WARMUP_RATIO
    if progress < 1.0 - WARMDOWN_RATIO:
        return 1.0
    cooldown = (1.0 - progress) / WARMDOWN_RATIO
    return cooldown + (1 - cooldown) * FINAL_LR_FRAC


def get_muon_momentum(step: int) -> float:
    frac = min(step / 300, 1)
    return (1 - frac) * 0.85 + frac * 0.95


def get_weight_decay(progress: float) -> float:
    return WEIGHT_DECAY * (1 - progress)


def build_model(vocab_size: int, device: torch.device) -> tuple[GPT, GPTConfig]:
    model_dim = math.ceil(DEPTH * ASPECT_RATIO / HEAD_DIM) * HEAD_DIM
    n_head = model_dim // HEAD_DIM
    config = GPTConfig(sequence_len=MAX_SEQ_LEN, vocab_size=vocab_size, n_layer=DEPTH,
                       n_head=n_head, n_kv_head=n_head, n_embd=model_dim,
                       window_pattern=WINDOW_PATTERN)
    with torch.device("meta"):
        model = GPT(config)
    model.to_empty(device=device)
    model.init_weights()
    return model, config


# ---------------------------------------------------------------------------
# Setup

def main():
    t_start = time.time()
    torch.manual_seed(int(os.environ.get("AUTORESEARCH_SEED", 42)))
    torch.set_float32_matmul_precision("high")
    device = get_device()
    autocast_ctx = autocast(device)
    tokenizer = Tokenizer.load()
    model, config = build_model(tokenizer.get_vocab_size(), device)
    num_params = sum(p.numel() for p in model.parameters())
    num_flops_per_token = model.estimate_flops()
    print(f"device: {device}, {compute_dtype(device)}; config: {config}")
    print(f"parameters: {num_params:,}; FLOPs per token: {num_flops_per_token:e}")

    tokens_per_fwdbwd = DEVICE_BATCH_SIZE * MAX_SEQ_LEN
    assert TOTAL_BATCH_SIZE % tokens_per_fwdbwd == 0, "TOTAL_BATCH_SIZE must divide evenly"
    grad_accum_steps = TOTAL_BATCH_SIZE // tokens_per_fwdbwd
    compiled = COMPILE and device.type == "cuda"
    optimizer = model.setup_optimizer(UNEMBEDDING_LR, EMBEDDING_LR, MATRIX_LR, WEIGHT_DECAY,
                                      ADAM_BETAS, SCALAR_LR, compile_steps=compiled)
    train_model = torch.compile(model, dynamic=False) if compiled else model
    train_loader = make_dataloader(tokenizer, DEVICE_BATCH_SIZE, MAX_SEQ_LEN, device)
    x, y, epoch = next(train_loader)
    peak = peak_flops(device)
    flops_per_step = num_flops_per_token * TOTAL_BATCH_SIZE
    print(f"time budget: {TIME_BUDGET}s; gradient accumulation: {grad_accum_steps}")

    # -----------------------------------------------------------------------
    # Training loop: stops when the counted training time reaches the budget

    smooth_train_loss = 0.0
    total_training_time = 0.0
    last_log = 0.0
    next_progress = 0.05  # a progress line for the harness at every 5% of the budget
    step = 0
    while True:
        synchronize(device)
        if step == 11:  # the first timed step: the harness's clock starts here too
            training_started()
        t0 = time.time()
        for _ in range(grad_accum_steps):
            with autocast_ctx:
                loss = train_model(x, y)
            train_loss = loss.detach()
            (loss / grad_accum_steps).backward()
            x, y, epoch = next(train_loader)

        progress = min(total_training_time / TIME_BUDGET, 1.0)
        lrm = get_lr_multiplier(progress)
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] * lrm
            if group["kind"] == "muon":
                group["momentum"] = get_muon_momentum(step)
                group["weight_decay"] = get_weight_decay(progress)
        optimizer.step()
        model.zero_grad(set_to_none=True)

        train_loss_f = train_loss.item()
        if math.isnan(train_loss_f) or train_loss_f > 100:
            print(f"FAIL: training loss {train_loss_f} at step {step}")
            raise SystemExit(1)
        synchronize(device)
        dt = time.time() - t0
        if step > 10:  # the first steps warm up (compile) and do not count
            total_training_time += dt

        ema = 0.9
        smooth_train_loss = ema * smooth_train_loss + (1 - ema) * train_loss_f
        debiased = smooth_train_loss / (1 - ema ** (step + 1))
        if step <= 10 or time.time() - last_log > 5:
            last_log = time.time()
            mfu = f" | mfu: {100 * flops_per_step / dt / peak:.1f}%" if peak else ""
            remaining = max(0, TIME_BUDGET - total_training_time)
            print(f"step {step:05d} ({100 * progress:.1f}%) | loss: {debiased:.6f} | "
                  f"lrm: {lrm:.2f} | dt: {dt * 1000:.0f}ms | "
                  f"tok/sec: {int(TOTAL_BATCH_SIZE / dt):,}{mfu} | epoch: {epoch} | "
                  f"remaining: {remaining:.0f}s", flush=True)

        if progress >= next_progress:
            report_progress(progress, debiased, (step + 1) * TOTAL_BATCH_SIZE)
            next_progress += 0.05
        if step == 0:  # Python's GC pauses would otherwise show up as slow steps
            gc.collect()
            gc.freeze()
            gc.disable()
        elif (step + 1) % 5000 == 0:
            gc.collect()
        step += 1
        if step > 10 and total_training_time >= TIME_BUDGET:
            break

    # -----------------------------------------------------------------------
    # Summary: hand the model to the harness, which computes val_bpb in its own process

    stats = {
        "training_seconds": total_training_time,
        "total_tokens_M": step * TOTAL_BATCH_SIZE / 1e6,
        "num_steps": step,
        "depth": DEPTH,
    }
    if peak:
        stats["mfu_percent"] = 100 * flops_per_step * (step - 11) / total_training_time / peak
    print(f"\ntrained {step} steps in {total_training_time:.1f}s ({time.time() - t_start:.1f}s "
          "in all); val_bpb is computed by the harness next", flush=True)
    save_model(model, config, stats)  # ends this process


if __name__ == "__main__":
    main()
