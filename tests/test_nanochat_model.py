"""nanochat_bpb's workspace scripts in-process: packing, tokenizer, model, Muon, the metric."""

from __future__ import annotations

import math
import random
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from nanochat_support import load_scripts, make_workspace, write_corpus

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One cache for the session, so the tiny corpus is prepared once."""
    path = tmp_path_factory.getbasetemp() / "nanochat-cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUTORESEARCH_CACHE", str(path))
        mp.setenv("AUTORESEARCH_CLIMBMIX_URL", "http://127.0.0.1:9")  # never the real hub
        yield path


@pytest.fixture(autouse=True)
def use_cache(cache, monkeypatch):
    monkeypatch.setenv("AUTORESEARCH_CACHE", str(cache))


@pytest.fixture(scope="module")
def scripts(tmp_path_factory, cache):
    data = write_corpus(tmp_path_factory.getbasetemp() / "nanochat-corpus")
    root = tmp_path_factory.mktemp("workspace")
    make_workspace(root, data)
    prepare, train = load_scripts(root)
    yield SimpleNamespace(prepare=prepare, train=train)
    sys.modules.pop("prepare", None)
    sys.modules.pop("train", None)


def tiny_config(train, **changes):
    fields = dict(sequence_len=64, vocab_size=512, n_layer=2, n_head=2, n_kv_head=2, n_embd=64)
    return train.GPTConfig(**{**fields, **changes})


# ---------------------------------------------------------------------------
# Data and tokenizer


def original_packing(batches, row_len, buffer_size):
    """The original's best-fit packer as its source reads, written independently of ours: a plain
    list refilled by whole batches while short, a linear scan for the longest document that fits
    (strictly longer wins, so the oldest of equally long ones), else the shortest cropped (min()
    returns the first, so the oldest of equally short ones)."""
    batches, buffer, rows = iter(batches), [], []
    while True:
        row = []
        while len(row) < row_len:
            while len(buffer) < buffer_size:
                batch = next(batches, None)
                if batch is None:
                    break
                buffer.extend(batch)
            if not buffer:
                return rows
            remaining = row_len - len(row)
            best, best_len = -1, 0
            for i, doc in enumerate(buffer):
                if len(doc) <= remaining and len(doc) > best_len:
                    best, best_len = i, len(doc)
            if best >= 0:
                row.extend(buffer.pop(best))
            else:
                shortest = min(range(len(buffer)), key=lambda i: len(buffer[i]))
                row.extend(buffer.pop(shortest)[:remaining])
        rows.append(row)


def test_best_fit_packing_by_hand_with_ties():
    """Five documents (BOS = 0, then an id), rows of 6, buffer of 3, batches of 2."""
    from nanochat_support import TEMPLATE_PREPARE

    docs = [[0, 1, 1], [0, 2, 2, 2], [0, 3, 3], [0, 4], [0, 5, 5, 5, 5, 5, 5]]
    batches = [docs[0:2], docs[2:4], docs[4:5]]
    expected = [
        [0, 2, 2, 2, 0, 4],  # the longest that fits (4) first, then of the space 2 only doc 4 fits
        [0, 1, 1, 0, 3, 3],  # docs 1 and 3 are equally long: the older (1) first
        [0, 5, 5, 5, 5, 5],  # nothing else left: the shortest (doc 5) is cropped to fill the row
    ]
    assert list(TEMPLATE_PREPARE.pack_rows(batches, 6, buffer_size=3)) == expected
    assert original_packing(batches, 6, 3) == expected


@pytest.mark.parametrize("buffer_size, batch_docs", [(1000, 128), (10, 4), (7, 3)])
def test_best_fit_packing_matches_the_original_row_for_row(buffer_size, batch_docs):
    from nanochat_support import TEMPLATE_PREPARE

    rng = random.Random(buffer_size)
    # few distinct lengths, so ties between equally long and equally short documents are common
    docs = [[0, 1000 + i] + [7] * rng.choice([0, 3, 3, 10, 30, 30, 61, 200]) for i in range(3000)]
    batches = [docs[i:i + batch_docs] for i in range(0, len(docs), batch_docs)]
    ours = list(TEMPLATE_PREPARE.pack_rows(batches, 65, buffer_size))
    assert len(ours) > 500 and ours == original_packing(batches, 65, buffer_size)
    assert all(len(row) == 65 and row[0] == 0 for row in ours)


def test_split_documents_cuts_at_blank_lines(scripts):
    paragraphs = [f"paragraph {i}\n" + "x" * 300 for i in range(10)]
    docs = scripts.prepare.split_documents("\n\n".join(paragraphs), 1000)
    assert "\n\n".join(docs) == "\n\n".join(paragraphs)
    assert all(len(doc) <= 1000 for doc in docs) and len(docs) == 4


def test_dataloader_rows_start_with_bos(scripts):
    tokenizer = scripts.prepare.Tokenizer.load()
    loader = scripts.prepare.make_dataloader(tokenizer, 4, 64)
    for _ in range(20):
        x, y, epoch = next(loader)
        assert x.shape == y.shape == (4, 64) and x.dtype == torch.long
        assert (x[:, 0] == tokenizer.get_bos_token_id()).all()
        assert torch.equal(x[:, 1:], y[:, :-1])
        assert epoch >= 1


def test_tokenizer_round_trip_and_token_bytes(scripts):
    tokenizer = scripts.prepare.Tokenizer.load()
    text = "def f(x):\n    return x ** 2  # ünïcode ✓ 12345\n"
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    batch = tokenizer.encode([text, "a"], prepend_bos=True)
    assert batch[0] == [tokenizer.get_bos_token_id(), *ids]
    assert tokenizer.get_vocab_size() == 512
    token_bytes = scripts.prepare.get_token_bytes()
    assert len(token_bytes) == 512 and token_bytes[-4:].tolist() == [0, 0, 0, 0]
    assert int(token_bytes[:-4].min()) >= 1
    # the original's count: each token decoded on its own, so a lone byte of a multi-byte
    # character counts as its replacement character (3 bytes), not as the 1 byte it is
    raw = [len(tokenizer.encoding.decode_single_token_bytes(i)) for i in range(508)]
    decoded = [len(tokenizer.decode([i]).encode("utf-8")) for i in range(508)]
    assert token_bytes[:-4].tolist() == decoded
    assert sum(r != d for r, d in zip(raw, decoded, strict=True)) >= 128  # the 128 bytes >= 0x80


def test_the_last_step_may_overshoot_the_budget_by_a_step(scripts):
    allowed = scripts.prepare.overshoot_allowed
    assert allowed(300, {"training_seconds": 301.0, "num_steps": 1011}) == pytest.approx(6.0)  # 2%
    assert allowed(300, {"training_seconds": 301.0, "num_steps": 311}) == pytest.approx(10.03, abs=0.01)
    # a busy machine: 10 timed steps of 0.7 s on average (the 11 untimed steps do not count)
    assert allowed(5, {"training_seconds": 7.1, "num_steps": 21}) == pytest.approx(7.1)
    assert allowed(10, {}) == 2.0


def test_training_never_reads_validation_documents(scripts):
    prepare = scripts.prepare
    train_docs = set(prepare.documents(prepare.train_dir()))
    val_docs = list(prepare.documents(prepare.val_dir()))
    assert val_docs and not train_docs & set(val_docs)
    assert all(prepare.is_validation(doc) for doc in val_docs)


# ---------------------------------------------------------------------------
# Model


@pytest.mark.parametrize("n_layer, expected", [(1, [0]), (2, [1]), (3, [0, 2]), (8, [1, 3, 5, 7])])
def test_value_embeddings_on_alternating_layers_ending_at_the_last(scripts, n_layer, expected):
    model = scripts.train.GPT(tiny_config(scripts.train, n_layer=n_layer))
    assert sorted(int(i) for i in model.value_embeds) == expected
    gated = [i for i, block in enumerate(model.transformer.h) if block.attn.ve_gate is not None]
    assert gated == expected


def test_window_pattern_repeats_and_ends_long(scripts):
    train = scripts.train
    windows = train.window_sizes(tiny_config(train, sequence_len=2048, n_layer=8))
    assert windows == [1024, 1024, 1024, 2048] * 2
    assert train.window_sizes(tiny_config(train, sequence_len=2048, n_layer=6)) == [
        1024,
        1024,
        1024,
        2048,
        1024,
        2048,
    ]
    assert train.window_sizes(tiny_config(train, n_layer=3, window_pattern="L")) == [64] * 3


def test_sliding_window_attention_matches_a_direct_computation(scripts):
    train = scripts.train
    torch.manual_seed(0)
    T, window = 16, 4
    q, k, v = (torch.randn(2, 2, T, 8) for _ in range(3))
    got = train.attention(q, k, v, train.sliding_window_mask(window, T, CPU))
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    allowed = (j <= i) & (i - j <= window)
    scores = (q @ k.transpose(-1, -2) / math.sqrt(8)).masked_fill(~allowed, float("-inf"))
    assert torch.allclose(got, scores.softmax(-1) @ v, atol=1e-5)
    full = train.attention(q, k, v, None)
    causal = (q @ k.transpose(-1, -2) / math.sqrt(8)).masked_fill(j > i, float("-inf"))
    assert torch.allclose(full, causal.softmax(-1) @ v, atol=1e-5)


@pytest.mark.parametrize("head_dim", [8, 7])
def test_rotary_rotates_channel_pairs_and_passes_an_odd_channel(scripts, head_dim):
    train = scripts.train
    model = train.GPT(tiny_config(train, n_head=2, n_embd=2 * head_dim))
    x = torch.randn(1, 64, 2, head_dim)
    y = train.apply_rotary_emb(x, model.cos[:, :64], model.sin[:, :64])
    assert torch.allclose(y.norm(dim=-1), x.norm(dim=-1), atol=1e-5)  # a rotation
    assert torch.allclose(y[:, 0], x[:, 0])  # position 0: angle 0
    assert not torch.allclose(y[:, 5], x[:, 5])
    if head_dim % 2:
        assert torch.equal(y[..., -1], x[..., -1])


def test_init_scheme(scripts):
    train = scripts.train
    torch.manual_seed(0)
    model = train.GPT(tiny_config(train, n_embd=256, vocab_size=4096))
    model.init_weights()
    block = model.transformer.h[0]
    assert model.transformer.wte.weight.std().item() == pytest.approx(1.0, rel=0.05)
    assert model.lm_head.weight.std().item() == pytest.approx(0.001, rel=0.05)
    assert block.attn.c_q.weight.abs().max().item() <= 3**0.5 * 256**-0.5
    assert block.attn.c_q.weight.std().item() == pytest.approx(256**-0.5, rel=0.05)
    assert not block.attn.c_proj.weight.any() and not block.mlp.c_proj.weight.any()
    assert model.resid_lambdas.eq(1.0).all() and model.x0_lambdas.eq(0.1).all()
    assert not model.transformer.h[1].attn.ve_gate.weight.any()


def test_logits_are_soft_capped_and_the_loss_falls(scripts):
    train = scripts.train
    torch.manual_seed(0)
    model = train.GPT(tiny_config(train))
    model.init_weights()
    nn.init.normal_(model.lm_head.weight, std=10.0)
    idx = torch.randint(0, 512, (2, 64))
    assert model(idx).abs().max() <= 15.0
    model.init_weights()
    optimizer = model.setup_optimizer(0.004, 0.6, 0.04, 0.2, (0.8, 0.95), 0.5)
    losses = []
    for _ in range(8):
        loss = model(idx, idx.roll(-1, 1))
        loss.backward()
        optimizer.step()
        model.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5


# ---------------------------------------------------------------------------
# Optimizer


@pytest.mark.parametrize("rows, cols", [(64, 16), (16, 64)])
def test_muon_step_on_stacked_matrices(scripts, rows, cols):
    train = scripts.train
    torch.manual_seed(0)
    start = [torch.randn(rows, cols) for _ in range(3)]
    grads = [torch.randn(rows, cols) for _ in range(3)]

    def step(indices):
        params = [nn.Parameter(start[i].clone()) for i in indices]
        for p, i in zip(params, indices, strict=True):
            p.grad = grads[i].clone()
        optimizer = train.MuonAdamW(
            [dict(kind="muon", params=params, lr=0.04, momentum=0.95, beta2=0.95, weight_decay=0.0)]
        )
        optimizer.step()
        return optimizer, [p.detach() for p in params]

    optimizer, stacked = step([0, 1, 2])
    stat_shape = (3, rows, 1) if rows >= cols else (3, 1, cols)
    state = optimizer.state[optimizer.param_groups[0]["params"][0]]
    assert state["second_moment"].shape == stat_shape
    lr = 0.04 * max(1.0, rows / cols) ** 0.5
    for i, after in enumerate(stacked):
        update = (start[i] - after) / lr
        # orthogonalised: singular values near 1, so the Frobenius norm is about sqrt(min dim)
        assert update.norm().item() / math.sqrt(min(rows, cols)) == pytest.approx(1.0, abs=0.3)
        # NorMuon: on the first step every row (tall) or column (wide) has the same norm
        norms = update.norm(dim=1 if rows >= cols else 0)
        assert (norms.std() / norms.mean()).item() < 0.02
        # stacking does not mix matrices: one alone gets the same update
        assert torch.allclose(step([i])[1][0], after, atol=1e-4)


def test_cautious_weight_decay_only_where_update_and_weight_agree(scripts):
    muon_step = scripts.train.muon_step
    torch.manual_seed(1)
    start, grads = torch.randn(2, 32, 8), torch.randn(2, 32, 8)

    def run(weight_decay):
        params = start.clone()
        muon_step(
            grads.clone(),
            params,
            torch.zeros_like(start),
            torch.zeros(2, 32, 1),
            0.9,
            0.1,
            weight_decay,
            0.95,
        )
        return params

    plain, decayed = run(0.0), run(0.5)
    update = start - plain
    agree = update * start >= 0
    assert agree.any() and (~agree).any()
    # lr and weight decay act in bf16, as in the original: lr * wd is bf16(bf16(0.1) * 0.5)
    bf16 = lambda x: torch.tensor(x).bfloat16()  # noqa: E731
    lr_wd = (bf16(0.1) * bf16(0.5)).item()
    assert lr_wd != 0.1 * 0.5
    assert torch.allclose(decayed, plain - lr_wd * start * agree, atol=1e-6)


def test_muon_beta2_acts_in_bf16_as_in_the_original(scripts):
    torch.manual_seed(2)
    grads, second_moment = torch.randn(1, 16, 8), torch.zeros(1, 16, 1)
    scripts.train.muon_step(grads, torch.randn(1, 16, 8), torch.zeros(1, 16, 8), second_moment,
                            0.0, 0.0, 0.0, 0.95)
    X = grads.bfloat16()  # momentum 0: the update is the gradient, orthogonalised
    X = X / (X.norm(dim=(-2, -1), keepdim=True) * 1.02 + 1e-6)
    for a, b, c in scripts.train.POLAR_EXPRESS_COEFFS:
        A = X.mT @ X
        X = a * X + X @ (b * A + c * (A @ A))
    v_mean = X.float().square().mean(dim=-1, keepdim=True)
    assert torch.allclose(second_moment, (1 - 0.94921875) * v_mean, rtol=1e-6)
    assert not torch.allclose(second_moment, (1 - 0.95) * v_mean, rtol=1e-4)


def test_optimizer_groups_and_schedules_follow_the_original(scripts):
    train = scripts.train
    model, config = train.build_model(512, CPU)
    optimizer = model.setup_optimizer(0.004, 0.6, 0.04, 0.2, (0.8, 0.95), 0.5)
    scale = (config.n_embd / 768) ** -0.5
    adamw = [g for g in optimizer.param_groups if g["kind"] == "adamw"]
    assert [g["lr"] for g in adamw] == pytest.approx([0.004 * scale, 0.6 * scale, 0.6 * scale, 0.005, 0.5])
    assert adamw[-1]["betas"] == (0.96, 0.95) and all(g["eps"] == 1e-10 for g in adamw)
    muon = [g for g in optimizer.param_groups if g["kind"] == "muon"]
    assert sum(len(g["params"]) for g in muon) == len(list(model.transformer.h.parameters()))
    assert all(len({p.shape for p in g["params"]}) == 1 for g in muon)
    assert [train.get_lr_multiplier(p) for p in (0.0, 0.5, 0.75, 1.0)] == [1.0, 1.0, 0.5, 0.0]
    assert train.get_muon_momentum(0) == 0.85 and train.get_muon_momentum(600) == 0.95
    assert train.get_weight_decay(0.25) == pytest.approx(0.15)


# ---------------------------------------------------------------------------
# The metric


def test_bpb_matches_a_direct_computation_of_the_formula(scripts):
    prepare, train = scripts.prepare, scripts.train
    torch.manual_seed(0)
    model = train.GPT(tiny_config(train, n_layer=1))
    model.init_weights()
    nn.init.normal_(model.lm_head.weight, std=0.5)  # uneven, confident predictions
    rows = torch.from_numpy(np.load(prepare.val_rows_path())).long()[:6]
    rows[:, 30] = prepare.Tokenizer.load().get_bos_token_id()  # targets of 0 bytes, not counted
    token_bytes = prepare.get_token_bytes()
    with torch.inference_mode():
        got = prepare.evaluate_bpb(model, rows, token_bytes, 4)  # batches of 4 and 2

    with torch.no_grad():
        logits = model(rows[:, :-1]).double().tolist()
    nats, total_bytes, skipped = 0.0, 0, 0
    for b, row in enumerate(rows.tolist()):
        for t, target in enumerate(row[1:]):
            if token_bytes[target] == 0:
                skipped += 1
                continue
            scores = logits[b][t]
            top = max(scores)
            log_sum = top + math.log(sum(math.exp(s - top) for s in scores))
            nats += log_sum - scores[target]
            total_bytes += int(token_bytes[target])
    assert skipped > 0  # BOS targets are in there and must not count
    assert got == pytest.approx(nats / (math.log(2) * total_bytes), rel=1e-6)


class Peeking(nn.Module):
    """Reads the next token at every position from ``start`` on: a non-causal model that the
    old check (first half of each row only) could not see."""

    def __init__(self, start=0, every=1):
        super().__init__()
        self.start, self.every = start, every

    def forward(self, idx):
        logits = torch.zeros(*idx.shape, 512)
        cheat = F.one_hot(idx.roll(-1, dims=1), 512).float() * 10
        logits[:, self.start::self.every] += cheat[:, self.start::self.every]
        return logits


def in_process(prepare, module):
    """A ModelProcess whose model runs here (for unit tests of the checks only)."""

    class InProcess(prepare.ModelProcess):
        def __init__(self):
            self.shapes = []

        def logits(self, inputs):
            self.shapes.append(tuple(inputs.shape))
            with torch.inference_mode():
                return module(inputs)

    return InProcess()


@pytest.mark.parametrize("start, every", [(0, 1), (40, 1), (62, 1), (1, 7)])
def test_causality_check_tests_every_position(scripts, start, every):
    prepare, train = scripts.prepare, scripts.train
    rows = torch.from_numpy(np.load(prepare.val_rows_path())).long()
    check = prepare.check_causal
    with pytest.raises(prepare.Failure, match="not causal") as failure:
        check(in_process(prepare, Peeking(start, every)), rows, 8, 1e-3, random.Random(0))
    assert failure.value.status == "invalid"
    model = train.GPT(tiny_config(train))
    model.init_weights()
    nn.init.normal_(model.lm_head.weight, std=0.5)
    for block in model.transformer.h:
        nn.init.normal_(block.attn.c_proj.weight, std=0.1)
    honest = in_process(prepare, model)
    check(honest, rows, 8, 1e-3, random.Random(0))  # a causal model passes
    # the reference and every variant batch have one shape: the same kernels, bit-equal logits
    assert set(honest.shapes) == {(8, 64)} and len(honest.shapes) == 1 + 8  # 63 splits in 8 batches


def test_norm_runs_outside_autocast(scripts, monkeypatch):
    """torch >= 2.10 runs rms_norm in fp32 under CUDA autocast; the original's torch kept bf16."""
    seen = []
    real = F.rms_norm

    def recording(x, *args, **kwargs):
        seen.append(torch.is_autocast_enabled("cpu"))
        return real(x, *args, **kwargs)

    monkeypatch.setattr(scripts.train.F, "rms_norm", recording)
    x = torch.randn(2, 8, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert scripts.train.norm(x).dtype == torch.bfloat16
    assert seen == [False]


@pytest.mark.parametrize(
    "name, peak",
    [
        ("NVIDIA H100 80GB HBM3", 989e12),
        ("NVIDIA H100 PCIe", 756e12),
        ("NVIDIA H200", 989e12),
        ("NVIDIA A100-SXM4-80GB", 312e12),
        ("NVIDIA L40S", 362e12),
        ("NVIDIA L40", 181e12),
        ("NVIDIA L4", 121e12),
        ("NVIDIA GeForce RTX 4090", 165.2e12),
        ("NVIDIA GH200 480GB", None),
        ("Tesla T4", None),
    ],
)
def test_peak_flops_match_whole_words(name, peak):
    from nanochat_support import TEMPLATE_PREPARE

    assert TEMPLATE_PREPARE.known_peak(name) == peak
