"""
The harness's half of the nanochat_bpb experiment: constants, data, tokenizer, dataloader and the
metric. The agent reads this file and never edits it; the harness owns everything here.

    python prepare.py          # one-time set-up: corpus, tokenizer, validation rows (idempotent)
    python prepare.py train    # the harness's launcher: runs train.py under the rules below
    python prepare.py eval     # the harness's evaluator: val_bpb of the weights train.py saved

The rules: training gets the budget from the harness and may not read the validation split (an
audit hook refuses it); val_bpb is computed here, in a separate process, from the model's logits.
"""

import argparse
import bisect
import dataclasses
import functools
import importlib.util
import itertools
import json
import math
import os
import pickle
import resource
import runpy
import sys
import sysconfig
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import tiktoken
import torch

# ---------------------------------------------------------------------------
# Constants (written when the workspace was created; a run never changes them)

PRESET = "gpu"                # hardware preset the workspace was made for
DEVICE = "auto"               # auto (cuda -> mps -> cpu), cuda, mps or cpu
CORPUS = "climbmix"           # climbmix, stdlib (this Python's own sources) or folder (DATA_DIR)
CORPUS_ID = ""                # fingerprinted corpus id; prepare refuses a corpus that differs
DATA_DIR = ""                 # the local folder of a "folder" corpus
MAX_SEQ_LEN = 2048            # context length of training and evaluation
VOCAB_SIZE = 8192             # BPE vocabulary, special tokens included
TIME_BUDGET = 300             # seconds of training (the launcher sets the run's budget)
EVAL_TOKENS = 40 * 524288     # size of the fixed validation set, in tokens
EVAL_BATCH_SIZE = 32          # validation rows per forward pass
NUM_TRAIN_SHARDS = 10         # ClimbMix training shards to download

SPLIT_PATTERN = (             # GPT-4 style pre-tokenisation, with numbers of at most two digits
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*"""
    r"""|\s*[\r\n]|\s+(?!\S)|\s+"""
)
SPECIAL_TOKENS = [f"<|reserved_{i}|>" for i in range(4)]
BOS_TOKEN = SPECIAL_TOKENS[0]   # every document, and so every row, starts with it
TOKENIZER_DOC_CHARS = 10_000    # documents are capped at this length for tokenizer training
TOKENIZER_MAX_CHARS = 10**9     # and training stops after this many characters
MAX_DOC_CHARS = 1_000           # local texts are cut into documents of about this length
VAL_EVERY = 20                  # local corpora: documents with crc32 % VAL_EVERY == 0 validate
DOCS_PER_SHARD = 20_000         # local corpora: documents per parquet shard

CLIMBMIX_URL = "https://huggingface.co/datasets/karpathy/climbmix-400b-shuffle/resolve/main"
CLIMBMIX_URL_ENV = "AUTORESEARCH_CLIMBMIX_URL"  # points the downloader at a mirror (or a test)
VAL_SHARD = 6542                # the last ClimbMix shard, pinned as validation
CACHE_ENV = "AUTORESEARCH_CACHE"  # overrides ~/.cache/autoresearch
CHECKPOINT_ENV = "AUTORESEARCH_CHECKPOINT"  # where save_model writes (set by the launcher)
PEAK_FLOPS = (                  # dense bf16 peaks; the first name found in the device name wins
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),
    ("H200", 989e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("RTX 4090", 165.2e12),
    ("RTX 3090", 71e12),
    ("A10G", 70e12),
    ("L4", 121e12),
)

# Taken before train.py can run any code in this process (the evaluator imports it), so that
# reassigning these names there cannot change how the metric is computed or where it goes.
_TRUSTED = dict(
    log_softmax=torch.log_softmax,
    gather=torch.gather,
    where=torch.where,
    sum=torch.sum,
    abs=torch.abs,
    max=torch.max,
    inference_mode=torch.inference_mode,
    load=torch.load,
    load_state_dict=torch.nn.Module.load_state_dict,
    dumps=json.dumps,
    os_open=os.open,
    os_write=os.write,
    os_close=os.close,
    os_exit=os._exit,
)


# ---------------------------------------------------------------------------
# Cache layout: <cache>/nanochat_bpb/<corpus id>/{train,val,tokenizer_v<vocab>}

def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "autoresearch")


def corpus_dir() -> Path:
    return cache_root() / "nanochat_bpb" / corpus_id()


def train_dir() -> Path:
    return corpus_dir() / "train"


def val_dir() -> Path:
    """Everything of the validation split lives here, and training may not open it."""
    return corpus_dir() / "val"


def tokenizer_dir() -> Path:
    return corpus_dir() / f"tokenizer_v{VOCAB_SIZE}"


def val_rows_path() -> Path:
    return val_dir() / f"rows_v{VOCAB_SIZE}_t{MAX_SEQ_LEN}_n{EVAL_TOKENS}.npy"


# ---------------------------------------------------------------------------
# Corpora: ClimbMix shards, this Python's standard library, or a local folder

def stdlib_files() -> list[Path]:
    """The running Python's own .py sources: an offline corpus that needs nothing installed."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "dist-packages", "__pycache__"}
    return sorted(
        (p for p in root.rglob("*.py") if not skip & set(p.relative_to(root).parts)),
        key=lambda p: p.relative_to(root).as_posix(),
    )


def folder_files(folder: Path) -> list[Path]:
    files = (p for p in folder.rglob("*") if p.suffix in (".txt", ".jsonl", ".parquet"))
    return sorted((p for p in files if p.is_file()), key=lambda p: p.relative_to(folder).as_posix())


def fingerprint(files: list[Path], root: Path) -> str:
    """Eight hex digits over the files' relative names and sizes: the same corpus, the same id."""
    listing = "".join(f"{p.relative_to(root).as_posix()}:{p.stat().st_size}\n" for p in files)
    return f"{zlib.crc32(listing.encode()):08x}"


def local_files(corpus: str, data_dir: str) -> tuple[list[Path], Path]:
    if corpus == "stdlib":
        return stdlib_files(), Path(sysconfig.get_paths()["stdlib"])
    folder = Path(data_dir).expanduser().resolve()
    if not folder.is_dir():
        raise SystemExit(f"data folder {folder} does not exist")
    return folder_files(folder), folder


def find_corpus_id(corpus: str = CORPUS, data_dir: str = DATA_DIR) -> str:
    """The id of the corpus as it is on this machine now."""
    if corpus == "climbmix":
        return "climbmix"
    files, root = local_files(corpus, data_dir)
    if not files:
        raise SystemExit(f"no .txt, .jsonl or .parquet files under {root}")
    if corpus == "stdlib":
        version = ".".join(map(str, sys.version_info[:3]))
        return f"stdlib-py{version}-{fingerprint(files, root)}"
    return f"folder-{root.name}-{fingerprint(files, root)}"


@functools.cache
def corpus_id() -> str:
    """CORPUS_ID when the workspace recorded one, else the corpus found here."""
    return CORPUS_ID or find_corpus_id()


def split_documents(text: str, max_chars: int = MAX_DOC_CHARS) -> list[str]:
    """Cut a long text at blank lines into documents of about ``max_chars`` (longer paragraphs
    stay whole), so that short training rows do not see only the start of every file."""
    docs, current = [], ""
    for paragraph in text.split("\n\n"):
        if current and len(current) + len(paragraph) + 2 > max_chars:
            docs.append(current)
            current = paragraph
        else:
            current = f"{current}\n\n{paragraph}" if current else paragraph
    docs.append(current)
    return [doc for doc in docs if doc.strip()]


def read_documents(path: Path):
    """Documents of one local file: .txt/.py cut at blank lines, .jsonl lines, .parquet rows."""
    if path.suffix == ".parquet":
        # pyarrow, httpx and rustbpe are imported where needed: importing this file (as the
        # evaluator and the GPU benchmark do) needs only torch, numpy and tiktoken
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(columns=["text"]):
            yield from (text for text in batch.column("text").to_pylist() if text)
    elif path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    record = json.loads(line)
                    yield record if isinstance(record, str) else record["text"]
    else:
        try:
            yield from split_documents(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            print(f"skipping {path}: not UTF-8")


def is_validation(doc: str) -> bool:
    """The pinned validation subset of a local corpus: a fixed rule on the document's content."""
    return zlib.crc32(doc.encode("utf-8")) % VAL_EVERY == 0


def write_parquet(docs: list[str], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(pa.table({"text": docs}), tmp)
    tmp.rename(path)


def materialise_local_corpus() -> None:
    """Write a local corpus as parquet shards of documents: train/ and a pinned val/."""
    if (val_dir() / "docs.parquet").exists():
        return
    files, root = local_files(CORPUS, DATA_DIR)
    train_dir().mkdir(parents=True, exist_ok=True)
    val_dir().mkdir(parents=True, exist_ok=True)
    train, val, shard = [], [], 0
    for i, path in enumerate(files):
        for doc in read_documents(path):
            (val if is_validation(doc) else train).append(doc)
        if len(train) >= DOCS_PER_SHARD:
            write_parquet(train, train_dir() / f"shard_{shard:05d}.parquet")
            train, shard = [], shard + 1
        if (i + 1) % 200 == 0 or i + 1 == len(files):
            print(f"corpus: read {i + 1}/{len(files)} files under {root}", flush=True)
    if train:
        write_parquet(train, train_dir() / f"shard_{shard:05d}.parquet")
    if not val:
        raise SystemExit("the corpus is too small: no document fell into the validation split")
    write_parquet(val, val_dir() / "docs.parquet")


def climbmix_url(index: int) -> str:
    base = os.environ.get(CLIMBMIX_URL_ENV, CLIMBMIX_URL).rstrip("/")
    return f"{base}/shard_{index:05d}.parquet"


def hub_reachable(timeout: float = 3.0) -> bool:
    """One quick request for the validation shard: can ClimbMix be downloaded from here?"""
    import httpx

    try:
        response = httpx.head(climbmix_url(VAL_SHARD), follow_redirects=True, timeout=timeout)
    except httpx.HTTPError:
        return False
    return response.status_code < 400


def download_file(url: str, path: Path, attempts: int = 5, backoff: float = 1.0) -> None:
    """Fetch ``url`` to ``path`` (via ``path.tmp`` and a rename), retrying with back-off."""
    import httpx

    if path.exists():
        return
    tmp = path.with_name(path.name + ".tmp")
    for attempt in range(attempts):
        try:
            with httpx.stream("GET", url, follow_redirects=True, timeout=60) as response:
                response.raise_for_status()
                with open(tmp, "wb") as f:
                    for chunk in response.iter_bytes(1 << 20):
                        f.write(chunk)
            tmp.rename(path)
            return
        except (httpx.HTTPError, OSError) as error:
            tmp.unlink(missing_ok=True)
            if attempt + 1 == attempts:
                raise SystemExit(f"download failed {attempts} times: {url}: {error}") from error
            wait = backoff * 2**attempt
            print(f"retrying {url} in {wait:g}s ({error})", flush=True)
            time.sleep(wait)


def download_climbmix(num_train_shards: int = NUM_TRAIN_SHARDS, workers: int = 8, **retry) -> None:
    """The training shards into train/ and the pinned validation shard into val/, in parallel."""
    train_dir().mkdir(parents=True, exist_ok=True)
    val_dir().mkdir(parents=True, exist_ok=True)
    jobs = [(i, train_dir() / f"shard_{i:05d}.parquet") for i in range(num_train_shards)]
    jobs.append((VAL_SHARD, val_dir() / f"shard_{VAL_SHARD:05d}.parquet"))
    todo = [(i, path) for i, path in jobs if not path.exists()]
    if not todo:
        return
    done = itertools.count(1)
    lock = threading.Lock()

    def fetch(job):
        download_file(climbmix_url(job[0]), job[1], **retry)
        with lock:
            print(f"downloaded {job[1].name} ({next(done)}/{len(todo)})", flush=True)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(fetch, todo))


def documents(folder: Path):
    """Every document of the parquet shards in ``folder``, in file order."""
    import pyarrow.parquet as pq

    for path in sorted(folder.glob("*.parquet")):
        for batch in pq.ParquetFile(path).iter_batches(columns=["text"]):
            yield from batch.column("text").to_pylist()


# ---------------------------------------------------------------------------
# Tokenizer: rustbpe-trained BPE, wrapped in tiktoken for fast encoding

def train_tokenizer() -> None:
    import rustbpe

    def texts():
        total = 0
        for doc in documents(train_dir()):
            doc = doc[:TOKENIZER_DOC_CHARS]
            yield doc
            total += len(doc)
            if total >= TOKENIZER_MAX_CHARS:
                return

    started = time.time()
    bpe = rustbpe.Tokenizer()
    bpe.train_from_iterator(texts(), VOCAB_SIZE - len(SPECIAL_TOKENS), pattern=SPLIT_PATTERN)
    ranks = {bytes(k): v for k, v in bpe.get_mergeable_ranks()}
    encoding = tiktoken.Encoding(
        name="nanochat_bpb",
        pat_str=bpe.get_pattern(),
        mergeable_ranks=ranks,
        special_tokens={name: len(ranks) + i for i, name in enumerate(SPECIAL_TOKENS)},
    )
    # byte length of every token's text; 0 for special tokens, which the metric does not count
    lengths = [len(encoding.decode_single_token_bytes(i)) for i in range(len(ranks))]
    token_bytes = torch.tensor(lengths + [0] * len(SPECIAL_TOKENS), dtype=torch.int32)
    tokenizer_dir().mkdir(parents=True, exist_ok=True)
    torch.save(token_bytes, tokenizer_dir() / "token_bytes.pt")
    tmp = tokenizer_dir() / "tokenizer.pkl.tmp"
    tmp.write_bytes(pickle.dumps(encoding))
    tmp.rename(tokenizer_dir() / "tokenizer.pkl")
    seconds = time.time() - started
    print(f"tokenizer: vocab {encoding.n_vocab} trained in {seconds:.1f}s", flush=True)


class Tokenizer:
    """A tiktoken ``Encoding`` with the BOS convention of this experiment."""

    def __init__(self, encoding: tiktoken.Encoding):
        self.encoding = encoding
        self.bos_token_id = encoding.encode_single_token(BOS_TOKEN)

    @classmethod
    def load(cls, directory: Path | None = None) -> "Tokenizer":
        with open((directory or tokenizer_dir()) / "tokenizer.pkl", "rb") as f:
            return cls(pickle.load(f))

    def get_vocab_size(self) -> int:
        return self.encoding.n_vocab

    def get_bos_token_id(self) -> int:
        return self.bos_token_id

    def encode(self, text, prepend_bos: bool = False, num_threads: int = 8):
        """A string to a list of ids, or a list of strings to a list of lists."""
        prefix = [self.bos_token_id] if prepend_bos else []
        if isinstance(text, str):
            return prefix + self.encoding.encode_ordinary(text)
        batch = self.encoding.encode_ordinary_batch(text, num_threads=num_threads)
        return [prefix + ids for ids in batch]

    def decode(self, ids: list[int]) -> str:
        return self.encoding.decode(ids)


def get_token_bytes(device="cpu") -> torch.Tensor:
    return torch.load(tokenizer_dir() / "token_bytes.pt", weights_only=True).to(device)


# ---------------------------------------------------------------------------
# Dataloader: BOS-aligned best-fit packing, every row full, no padding

def pack_rows(docs, row_len: int, buffer_size: int = 1000):
    """Rows of ``row_len`` tokens from token lists that each start with BOS.

    Each row is filled with the largest buffered document that fits the space left; when none
    fits, the shortest one is cropped to fill the row exactly (its remainder is dropped). So
    every row starts with BOS and every position holds a real token. Ends when ``docs`` does.
    """
    docs = iter(docs)
    lengths, buffer = [], []  # sorted by length, side by side
    while True:
        row = []
        while len(row) < row_len:
            for doc in itertools.islice(docs, buffer_size - len(buffer)):
                i = bisect.bisect_left(lengths, len(doc))
                lengths.insert(i, len(doc))
                buffer.insert(i, doc)
            if not buffer:
                return
            space = row_len - len(row)
            i = bisect.bisect_right(lengths, space) - 1
            doc = buffer[i] if i >= 0 else buffer[0][:space]
            del lengths[max(i, 0)], buffer[max(i, 0)]
            row.extend(doc)
        yield row


def make_dataloader(tokenizer: Tokenizer, B: int, T: int, device="cpu", batch_docs: int = 128):
    """Endless training batches ``(inputs, targets, epoch)`` of shape (B, T) from the train split.

    The validation split is never available here: it lives in val/, which training may not open.
    """
    device = torch.device(device)
    state = {"epoch": 1}

    def token_docs():
        while True:
            texts = documents(train_dir())
            while batch := list(itertools.islice(texts, batch_docs)):
                yield from tokenizer.encode(batch, prepend_bos=True)
            state["epoch"] += 1

    rows = pack_rows(token_docs(), T + 1)
    while True:
        array = np.empty((B, T + 1), dtype=np.int64)
        for i in range(B):  # row by row: much faster than torch.tensor on nested lists
            array[i] = next(rows)
        batch = torch.from_numpy(array)
        if device.type == "cuda":
            batch = batch.pin_memory().to(device, non_blocking=True)
        else:
            batch = batch.to(device)
        yield batch[:, :-1], batch[:, 1:], state["epoch"]


def build_validation_rows(tokenizer: Tokenizer) -> np.ndarray:
    """The fixed validation set: the first EVAL_TOKENS // MAX_SEQ_LEN packed rows of val/."""
    def token_docs():
        texts = documents(val_dir())
        while batch := list(itertools.islice(texts, 128)):
            yield from tokenizer.encode(batch, prepend_bos=True)

    wanted = EVAL_TOKENS // MAX_SEQ_LEN
    rows = []
    for row in pack_rows(token_docs(), MAX_SEQ_LEN + 1):
        rows.append(row)
        if len(rows) % max(1, wanted // 10) == 0:
            print(f"tokenising validation: {len(rows)}/{wanted} rows", flush=True)
        if len(rows) == wanted:
            break
    if len(rows) < wanted:
        print(f"validation: only {len(rows)} rows of {MAX_SEQ_LEN} tokens in this corpus")
    return np.array(rows, dtype=np.int32)


# ---------------------------------------------------------------------------
# Devices: cuda -> mps -> cpu, bf16 where the hardware does it well

def get_device() -> torch.device:
    if DEVICE != "auto":
        return torch.device(DEVICE)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def compute_dtype(device: torch.device) -> torch.dtype:
    """bf16 on CUDA GPUs of compute capability 8 or more, fp32 everywhere else."""
    if device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8:
        return torch.bfloat16
    return torch.float32


def autocast(device: torch.device):
    dtype = compute_dtype(device)
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that wall-clock timings are honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def peak_flops(device: torch.device) -> float | None:
    """The device's dense bf16 peak in FLOP/s, where known; MFU is reported only then."""
    if device.type != "cuda" or compute_dtype(device) != torch.bfloat16:
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for key, flops in PEAK_FLOPS if key in name), None)


# ---------------------------------------------------------------------------
# Handing the model over: train.py saves, the evaluator loads

def checkpoint_path() -> Path:
    return Path(os.environ.get(CHECKPOINT_ENV) or corpus_dir() / "last_model.pt")


def save_model(model: torch.nn.Module, config, stats: dict) -> None:
    """Hand the trained model to the harness; train.py calls this once, when training ends.

    ``config`` is the dataclass the model class is built from (``Model(Config(**config))``);
    ``stats`` holds training figures for the summary (never the metric).
    """
    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile
    payload = {
        "model_class": type(model).__name__,
        "config_class": type(config).__name__,
        "config": dataclasses.asdict(config),
        "state_dict": model.state_dict(),
        "stats": {k: v for k, v in stats.items() if isinstance(v, (int, float, str))},
    }
    path = checkpoint_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)


# ---------------------------------------------------------------------------
# The launcher: train.py runs in this process, under the harness's budget and rules

def refuse_validation_reads() -> None:
    """Audit hook: opening (or linking) anything under val/ raises PermissionError in training."""
    guarded = os.path.realpath(val_dir()) + os.sep

    def hook(event, args):
        if event not in ("open", "os.link", "os.symlink") or isinstance(args[0], int):
            return
        target = os.path.realpath(os.fsdecode(os.fspath(args[0])))
        if (target + os.sep).startswith(guarded):
            raise PermissionError(f"training may not read the validation split ({target})")

    sys.addaudithook(hook)


def overshoot_allowed(budget: float, stats: dict) -> float:
    """Seconds the last step may end past the budget: 2 s, 2% of the budget or five mean steps,
    whichever is longest (on a busy machine single steps get slow)."""
    mean_step = float(stats.get("training_seconds", 0)) / max(1, int(stats.get("num_steps", 1)))
    return max(2.0, 0.02 * budget, 5 * mean_step)


def launch_training(train_path: Path, budget: float, report_path: Path) -> None:
    """Run train.py as __main__ with TIME_BUDGET = ``budget``; check it kept to it."""
    importlib.import_module("prepare").TIME_BUDGET = budget  # the copy train.py imports
    refuse_validation_reads()
    started = time.time()
    runpy.run_path(str(train_path), run_name="__main__")
    wall = time.time() - started
    if not checkpoint_path().exists():
        raise SystemExit("train.py ended without calling save_model(model, config, stats)")
    stats = torch.load(checkpoint_path(), map_location="cpu", weights_only=True)["stats"]
    trained = float(stats.get("training_seconds", wall))
    if trained > budget + overshoot_allowed(budget, stats):
        raise SystemExit(f"budget stretched: {trained:.1f}s of training for a {budget:g}s budget")
    report = {"train_wall_seconds": wall, "startup_seconds": max(0.0, wall - trained)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        report["peak_vram_mb"] = torch.cuda.max_memory_allocated() / 2**20
    report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB
    report_path.write_text(json.dumps(report))


# ---------------------------------------------------------------------------
# The metric, and the evaluator that computes it in its own process

def evaluate_bpb(model, rows: torch.Tensor, token_bytes: torch.Tensor, batch_size: int,
                 device: torch.device) -> float:
    """Bits per byte of the validation rows, independent of the vocabulary size:

        val_bpb = sum of -ln p(target) over targets whose byte length > 0
                  / (ln 2 * sum of those targets' byte lengths)

    ``model(inputs)`` must return logits of shape (B, T, vocab); inputs are ``row[:-1]`` and
    targets ``row[1:]`` of every row.
    """
    t = _TRUSTED
    total_nats = torch.zeros((), dtype=torch.float64, device=device)
    total_bytes = torch.zeros((), dtype=torch.float64, device=device)
    with t["inference_mode"](), autocast(device):
        for start in range(0, len(rows), batch_size):
            batch = rows[start:start + batch_size].to(device)
            inputs, targets = batch[:, :-1], batch[:, 1:]
            logits = model(inputs)
            if tuple(logits.shape) != (*inputs.shape, len(token_bytes)):
                raise SystemExit(f"model returned logits of shape {tuple(logits.shape)}, "
                                 f"expected {(*inputs.shape, len(token_bytes))}")
            logp = t["log_softmax"](logits.to(torch.float32), dim=-1)
            nats = -t["gather"](logp, -1, targets.unsqueeze(-1)).squeeze(-1)
            nbytes = token_bytes[targets]
            total_nats += t["sum"](t["where"](nbytes > 0, nats, 0.0), dtype=torch.float64)
            total_bytes += t["sum"](nbytes, dtype=torch.float64)
    return (total_nats / (math.log(2) * total_bytes)).item()


def max_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return _TRUSTED["max"](_TRUSTED["abs"](a.float() - b.float())).item()


def logits_tolerance(device: torch.device) -> float:
    """How far two forward passes that must agree may differ (bf16 kernels round)."""
    return 1e-3 if compute_dtype(device) == torch.float32 else 5e-2


def check_causal(model, batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Refuse a model whose logits see later tokens (it would read the targets); returns the
    batch's logits, for the statelessness check after the evaluation.

    The first half of each row's logits must not change when the second half of its input does.
    """
    inputs = batch[:, :-1].to(device)
    half = inputs.size(1) // 2
    scrambled = inputs.clone()
    scrambled[:, half:] = inputs[:, half:].flip(0).roll(1, dims=1)
    with _TRUSTED["inference_mode"](), autocast(device):
        reference, other = model(inputs), model(scrambled)
    if max_difference(reference[:, :half], other[:, :half]) > logits_tolerance(device):
        raise SystemExit("the model is not causal: its logits depend on later tokens")
    return reference


def check_stateless(model, batch: torch.Tensor, device: torch.device, reference) -> None:
    """The same input after the evaluation must give the same logits as before it."""
    with _TRUSTED["inference_mode"](), autocast(device):
        again = model(batch[:, :-1].to(device))
    if max_difference(reference, again) > logits_tolerance(device):
        raise SystemExit("the model changed during evaluation (it keeps state across calls)")


def import_train_module(path: Path):
    """train.py as module ``train``: its definitions run, its ``__main__`` block does not."""
    spec = importlib.util.spec_from_file_location("train", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["train"] = module
    spec.loader.exec_module(module)
    return module


def evaluate_checkpoint(run_dir: Path, train_path: Path, started: float) -> None:
    """Compute val_bpb of the saved weights; print the summary and write it to result.json."""
    # Everything the metric depends on is fixed before train.py runs any code in this process.
    batch_size, device, t = EVAL_BATCH_SIZE, get_device(), _TRUSTED
    rows = torch.from_numpy(np.load(val_rows_path())).long()
    token_bytes = get_token_bytes(device)
    checkpoint = t["load"](checkpoint_path(), map_location="cpu", weights_only=True)
    report = json.loads((run_dir / "train_report.json").read_text())
    eval_started = time.time()

    train = import_train_module(train_path)
    config = getattr(train, checkpoint["config_class"])(**checkpoint["config"])
    with torch.device(device):
        model = getattr(train, checkpoint["model_class"])(config)
    state = {name: tensor.to(device) for name, tensor in checkpoint["state_dict"].items()}
    t["load_state_dict"](model, state, strict=True, assign=True)  # dtypes as trained
    model.eval()
    first = rows[:batch_size]  # the checks use a batch of the evaluation's own shape
    reference = check_causal(model, first, device)
    val_bpb = evaluate_bpb(model, rows, token_bytes, batch_size, device)
    check_stateless(model, first, device, reference)

    measured = {  # by the harness; train.py's own figures never override these
        "total_seconds": time.time() - started,
        "eval_seconds": time.time() - eval_started,
        "num_params_M": sum(p.numel() for p in model.parameters()) / 1e6,
        "eval_tokens": rows[:, 1:].numel(),
    }
    summary = {**checkpoint["stats"], **report, **measured, "val_bpb": val_bpb}
    print_summary(summary)
    fd = t["os_open"](str(run_dir / "result.json"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    t["os_write"](fd, t["dumps"](summary).encode())
    t["os_close"](fd)
    sys.stdout.flush()
    t["os_exit"](0)  # no atexit handler that train.py registered may run after this


SUMMARY_FORMAT = {  # the original's keys and formats first, then the harness's additions
    "val_bpb": "{:.6f}", "training_seconds": "{:.1f}", "total_seconds": "{:.1f}",
    "peak_vram_mb": "{:.1f}", "mfu_percent": "{:.2f}", "total_tokens_M": "{:.1f}",
    "num_steps": "{}", "num_params_M": "{:.1f}", "depth": "{}", "startup_seconds": "{:.1f}",
    "eval_seconds": "{:.1f}", "eval_tokens": "{}", "peak_rss_mb": "{:.1f}",
}


def print_summary(summary: dict) -> None:
    print("---")
    for key, fmt in SUMMARY_FORMAT.items():
        if key in summary:
            print(f"{key + ':':<18}{fmt.format(summary[key])}")


# ---------------------------------------------------------------------------
# One-time preparation, and the command line

def prepare() -> None:
    """Corpus, tokenizer and validation rows, each only if it is not in the cache yet."""
    found = find_corpus_id()
    if CORPUS_ID and found != CORPUS_ID:
        raise SystemExit(f"the corpus changed since this workspace was made: found {found}, "
                         f"expected {CORPUS_ID}; make a new workspace")
    print(f"corpus {corpus_id()} in {corpus_dir()}", flush=True)
    if CORPUS == "climbmix":
        download_climbmix()
    else:
        materialise_local_corpus()
    if not (tokenizer_dir() / "tokenizer.pkl").exists():
        print(f"training the tokenizer (vocab {VOCAB_SIZE})", flush=True)
        train_tokenizer()
    if not val_rows_path().exists():
        rows = build_validation_rows(Tokenizer.load())
        tmp = val_rows_path().with_name("rows.tmp.npy")
        np.save(tmp, rows)
        tmp.rename(val_rows_path())
    print("ready", flush=True)


def main() -> None:
    # train.py's `import prepare` loads a copy of this file as its own module: whatever it
    # changes there, this process's launcher and evaluator (module __main__) do not see.
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command")
    train = commands.add_parser("train", help="run train.py under the budget (the launcher)")
    train.add_argument("--budget", type=float, default=TIME_BUDGET)
    train.add_argument("--run-dir", type=Path, required=True)
    evaluate = commands.add_parser("eval", help="val_bpb of the saved weights (the evaluator)")
    evaluate.add_argument("--run-dir", type=Path, required=True)
    evaluate.add_argument("--started", type=float, default=None)
    args = parser.parse_args()
    here = Path(__file__).resolve().parent
    if args.command is None:
        prepare()
        return
    os.environ[CHECKPOINT_ENV] = str(args.run_dir / "model.pt")
    if args.command == "train":
        launch_training(here / "train.py", args.budget, args.run_dir / "train_report.json")
    else:
        evaluate_checkpoint(args.run_dir, here / "train.py", args.started or time.time())


if __name__ == "__main__":
    main()
