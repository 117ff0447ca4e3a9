"""
The harness's half of the nanochat_bpb experiment: constants, data, tokenizer, dataloader and the
metric. The agent reads this file and never edits it; the harness owns everything here.

    python prepare.py                      # one-time set-up: corpus, tokenizer, validation rows
    python prepare.py train --run-dir DIR  # the launcher: train.py under the budget, timed from here
    python prepare.py eval --run-dir DIR   # the evaluator: val_bpb of the model train.py saved

Neither command imports train.py. The launcher runs train.py in a child process (no validation
split, the budget, its time measured from outside); the evaluator starts the trained model in a
child process that only ever receives the input batch it is evaluating and hands back logits,
and computes the loss, the checks and the recorded number itself, where the model's code never
runs.
"""

import argparse
import bisect
import ctypes
import dataclasses
import functools
import importlib.util
import itertools
import json
import math
import os
import pickle
import random
import runpy
import signal
import struct
import subprocess
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

# The original's CUDA allocator configuration; read when CUDA first allocates.
os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")

import torch  # noqa: E402

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
PEAK_FLOPS = (                  # dense bf16 peaks, FLOP/s; a GPU matches the first entry whose
    ("H100", "PCIe", 756e12),   # words all occur, whole, in its name ("L4" never matches "L40")
    ("H100", "NVL", 835e12),
    ("H100", 989e12),           # SXM
    ("H200", "NVL", 835e12),
    ("H200", 989e12),           # SXM
    ("A100", 312e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("L4", 121e12),
    ("A10G", 70e12),
    ("RTX", "4090", 165.2e12),
    ("RTX", "3090", 71e12),
)
RUN_SLACK_SECONDS = 3.0         # timed training the launcher may measure beyond what train.py reports
RUN_SLACK_FRACTION = 0.05       # ... or this fraction of the budget, whichever is more
STATELESS_BATCHES = 2           # evaluation batches replayed in a fresh model process


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
    return val_dir() / f"rows_v{VOCAB_SIZE}_t{MAX_SEQ_LEN}_n{EVAL_TOKENS}_b{EVAL_BATCH_SIZE}.npy"


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
    for batch in document_batches(folder):
        yield from batch


def document_batches(folder: Path, batch_docs: int = 128):
    """The documents of ``folder``'s shards in the original's batches: ``batch_docs`` at a time
    within each parquet row group (a row group's last batch may be shorter)."""
    import pyarrow.parquet as pq

    for path in sorted(folder.glob("*.parquet")):
        shard = pq.ParquetFile(path)
        for group in range(shard.num_row_groups):
            texts = shard.read_row_group(group, columns=["text"]).column("text").to_pylist()
            for start in range(0, len(texts), batch_docs):
                yield texts[start:start + batch_docs]


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
    # The original's byte count: each token decoded on its own, so a token that is not valid
    # UTF-8 by itself counts its replacement characters (3 bytes each); 0 for special tokens.
    lengths = [len(encoding.decode([i]).encode("utf-8")) for i in range(len(ranks))]
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

def pack_rows(batches, row_len: int, buffer_size: int = 1000):
    """Rows of ``row_len`` tokens from batches of token lists that each start with BOS: the
    original's best-fit packing, row for row.

    While the buffer holds fewer than ``buffer_size`` documents, the next whole batch joins it.
    Each row takes the longest buffered document that fits the space left (the oldest of equally
    long ones); when none fits, the shortest (the oldest of equally short ones) is cropped to fill
    the row exactly and its remainder dropped. Every row starts with BOS and every position holds
    a real token. Ends when ``batches`` does and the buffer is empty.
    """
    batches = iter(batches)
    keys, docs = [], {}  # keys: sorted (length, arrival); "oldest" = earliest arrival
    arrivals = itertools.count()
    while True:
        row = []
        while len(row) < row_len:
            while len(keys) < buffer_size:
                batch = next(batches, None)
                if batch is None:
                    break
                for doc in batch:
                    key = (len(doc), next(arrivals))
                    bisect.insort(keys, key)
                    docs[key] = doc
            if not keys:
                return
            space = row_len - len(row)
            fits = bisect.bisect_right(keys, (space, math.inf)) - 1
            if fits >= 0:  # the oldest document of the longest length that fits
                index = bisect.bisect_left(keys, (keys[fits][0], -1))
                row.extend(docs.pop(keys.pop(index)))
            else:
                row.extend(docs.pop(keys.pop(0))[:space])
        yield row


def make_dataloader(tokenizer: Tokenizer, B: int, T: int, device="cpu"):
    """Endless training batches ``(inputs, targets, epoch)`` of shape (B, T) from the train split.

    The validation split is never available here: it lives in val/, which training may not open.
    """
    device = torch.device(device)
    state = {"epoch": 1}

    def token_batches():
        while True:
            for texts in document_batches(train_dir()):
                yield tokenizer.encode(texts, prepend_bos=True)
            state["epoch"] += 1

    rows = pack_rows(token_batches(), T + 1)
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


def eval_row_count() -> int:
    """The original evaluates EVAL_TOKENS // (batch * MAX_SEQ_LEN) whole batches."""
    return EVAL_TOKENS // (EVAL_BATCH_SIZE * MAX_SEQ_LEN) * EVAL_BATCH_SIZE


def build_validation_rows(tokenizer: Tokenizer) -> np.ndarray:
    """The fixed validation set: the first packed rows of val/ (the stream does not wrap around:
    a small corpus gives fewer rows rather than the same documents twice)."""
    batches = (tokenizer.encode(texts, prepend_bos=True) for texts in document_batches(val_dir()))
    wanted = eval_row_count()
    rows = []
    for row in pack_rows(batches, MAX_SEQ_LEN + 1):
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
    return known_peak(torch.cuda.get_device_name(device))


def known_peak(name: str) -> float | None:
    """The PEAK_FLOPS entry of a device name, matched on whole words ("NVIDIA L40S" is no L4)."""
    words = set(name.replace("-", " ").split())
    return next((entry[-1] for entry in PEAK_FLOPS if set(entry[:-1]) <= words), None)


# ---------------------------------------------------------------------------
# What train.py calls: the protocol lines the harness reads, and handing the model over

def training_started() -> None:
    """train.py calls this once, right before its first timed step (after the untimed warm-up).
    The launcher's clock for timed training starts when it reads this line."""
    print("phase: training", flush=True)


def report_progress(frac: float, train_loss: float, tokens: int | None = None) -> None:
    """A progress line for the harness: the fraction of the budget done, the smoothed loss, and
    the tokens trained on so far (early abort compares curves at equal time and equal tokens)."""
    work = "" if tokens is None else f" tokens={tokens}"
    print(f"progress: frac={frac:.3f} train_loss={train_loss:.4f}{work}", flush=True)


def checkpoint_path() -> Path:
    return Path(os.environ.get(CHECKPOINT_ENV) or corpus_dir() / "last_model.pt")


def save_model(model: torch.nn.Module, config, stats: dict) -> None:
    """Hand the trained model to the harness and end the training process; train.py calls this
    once, when training ends (nothing after it runs).

    ``config`` is the dataclass the model class is built from (``Model(Config(**config))``);
    ``stats`` holds training figures for the summary (never the metric).
    """
    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        stats = {**stats, "peak_vram_mb": torch.cuda.max_memory_allocated() / 2**20}
    payload = {
        "model_class": type(model).__name__,
        "config_class": type(config).__name__,
        "config": dataclasses.asdict(config),
        "state_dict": model.state_dict(),
        "stats": {k: v for k, v in stats.items() if isinstance(v, (int, float, str))},
    }
    path = checkpoint_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path.with_name(path.name + ".tmp"))
    path.with_name(path.name + ".tmp").rename(path)
    sys.stdout.flush()
    os._exit(0)  # the launcher's clock stops when this process ends


# ---------------------------------------------------------------------------
# The children: train.py under the launcher's rules, and the trained model serving logits

def refuse_validation_reads(spawning: bool = True) -> None:
    """Audit hook: opening (or linking) anything under val/ raises PermissionError, as does
    (unless ``spawning``) starting another program or reading another process's memory."""
    guarded = os.path.realpath(val_dir()) + os.sep
    spawn_events = {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                    "os.forkpty", "pty.spawn"}

    def hook(event, args):
        if event in spawn_events and not spawning and not compiler_tool(event, args):
            raise PermissionError(f"the model may not start other programs ({event})")
        if event not in ("open", "os.link", "os.symlink") or isinstance(args[0], int):
            return
        target = os.path.realpath(os.fsdecode(os.fspath(args[0])))
        if (target + os.sep).startswith(guarded):
            who = "training" if spawning else "the model"
            raise PermissionError(f"{who} may not read the validation split ({target})")
        if not spawning and target.startswith(f"/proc/{os.getppid()}/"):
            raise PermissionError("the model may not read the harness's process")

    sys.addaudithook(hook)


COMPILER_TOOLS = {"ptxas", "cuobjdump", "nvdisasm", "gcc", "cc", "clang", "ld", "ldconfig"}


def compiler_tool(event: str, args: tuple) -> bool:
    """Whether a process start is one of the tools flex_attention's compiler (Triton) runs."""
    if event != "subprocess.Popen":
        return False
    executable, argv = args[0], args[1]
    program = executable or (argv if isinstance(argv, (str, bytes)) else (argv or [""])[0])
    return Path(os.fsdecode(program)).name in COMPILER_TOOLS


def run_training(train_path: Path, budget: float) -> None:
    """The training child: train.py as __main__ with TIME_BUDGET = ``budget``."""
    importlib.import_module("prepare").TIME_BUDGET = budget  # the copy train.py imports
    refuse_validation_reads()
    runpy.run_path(str(train_path), run_name="__main__")
    raise SystemExit("train.py ended without calling save_model(model, config, stats)")


def import_train_module(path: Path):
    """train.py as module ``train``: its definitions run, its ``__main__`` block does not."""
    spec = importlib.util.spec_from_file_location("train", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["train"] = module
    spec.loader.exec_module(module)
    return module


def read_message(stream) -> bytes | None:
    header = stream.read(8)
    if len(header) < 8:
        return None
    (size,) = struct.unpack("<Q", header)
    return stream.read(size)


def write_message(stream, payload: bytes) -> None:
    stream.write(struct.pack("<Q", len(payload)) + payload)
    stream.flush()


def open_logits_buffer(spec: tuple) -> torch.Tensor:
    """The evaluator's logits buffer, opened in the model process."""
    if spec[0] == "cuda":
        from torch.multiprocessing.reductions import rebuild_cuda_tensor

        return rebuild_cuda_tensor(*spec[1])
    _, path, shape = spec
    return torch.from_file(path, shared=True, size=math.prod(shape), dtype=torch.float32).view(shape)


def serve_model(train_path: Path, command_fd: int, reply_fd: int) -> None:
    """The model child: rebuild train.py's model from the checkpoint, then answer each input batch
    with its logits, written into the evaluator's buffer. It never sees a target or a metric."""
    refuse_validation_reads(spawning=False)
    commands, replies = os.fdopen(command_fd, "rb"), os.fdopen(reply_fd, "wb")

    def fail(message: str) -> None:
        write_message(replies, b"e" + message.encode()[:2000])
        raise SystemExit(message)

    spec = pickle.loads(read_message(commands))  # from the evaluator, our parent
    try:
        logits_out = open_logits_buffer(spec)
    except Exception as error:
        fail(f"{type(error).__name__}: {error}")
    write_message(replies, b"k")
    try:
        device = get_device()
        checkpoint = torch.load(checkpoint_path(), map_location="cpu", weights_only=True)
        train = import_train_module(train_path)
        config = getattr(train, checkpoint["config_class"])(**checkpoint["config"])
        with torch.device(device):
            model = getattr(train, checkpoint["model_class"])(config)
        state = {name: tensor.to(device) for name, tensor in checkpoint["state_dict"].items()}
        model.load_state_dict(state, strict=True, assign=True)  # dtypes as trained
        model.eval()
    except Exception as error:  # the evaluator shows it and fails the measurement
        fail(f"could not rebuild the model from train.py: {type(error).__name__}: {error}")
    write_message(replies, b"k")
    while (message := read_message(commands)) is not None:
        rows, length = struct.unpack("<ii", message[:8])
        tokens = np.frombuffer(message[8:], dtype=np.int32).reshape(rows, length)
        with torch.inference_mode(), autocast(device):
            logits = model(torch.from_numpy(tokens.astype(np.int64)).to(device))
        if tuple(logits.shape) != (rows, length, logits_out.size(-1)):
            fail(f"model returned logits of shape {tuple(logits.shape)}, "
                 f"expected {(rows, length, logits_out.size(-1))}")
        logits_out[:rows].copy_(logits)
        synchronize(device)
        write_message(replies, b"k")


# ---------------------------------------------------------------------------
# The harness's process: launcher and evaluator (train.py's code never runs here)

class Failure(Exception):
    """The experiment failed: ``status`` crash (it broke) or invalid (it broke the rules)."""

    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def harness_child(command: str, *args: str, pass_fds=(), env: dict | None = None) -> subprocess.Popen:
    """``python prepare.py COMMAND ...`` in a process group of its own (so whatever it leaves
    behind can be ended with it), its output through a pipe, killed if we die."""
    def die_with_parent():
        os.setpgid(0, 0)
        try:
            ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (Linux)
        except (OSError, AttributeError):
            pass

    return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), command, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, pass_fds=pass_fds,
                            env={**os.environ, **(env or {})}, preexec_fn=die_with_parent)


def end_group(pgid: int) -> None:
    """Kill what a finished child left behind in its process group (e.g. compiler workers)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def forward(stream, on_phase=None) -> None:
    """Copy a child's output to ours; phase lines are the harness's to print, not a child's."""
    for raw in stream:
        line = raw.decode("utf-8", errors="replace").rstrip("\n")
        if line.startswith("phase:"):
            if on_phase:
                on_phase(line.split(":", 1)[1].strip())
            continue
        print(line, flush=True)


def not_dumpable() -> None:
    """Children run with our user's rights: keep them out of this process's memory (Linux)."""
    try:
        ctypes.CDLL(None).prctl(4, 0)  # PR_SET_DUMPABLE
    except (OSError, AttributeError):
        pass


UNTIMED_STEPS = 11  # the template's steps 0-10 (compilation warm-up) are not counted, as in the original


def overshoot_allowed(budget: float, stats: dict) -> float:
    """Seconds the last step may end past the budget: 2 s, 2% of the budget or ten mean timed
    steps, whichever is longest (on a busy machine a single step can take several times the mean)."""
    timed_steps = max(1, int(stats.get("num_steps", 0)) - UNTIMED_STEPS)
    mean_step = float(stats.get("training_seconds", 0)) / timed_steps
    return max(2.0, 0.02 * budget, 10 * mean_step)


def launch_training(budget: float) -> dict:
    """Run train.py in a child under the budget; time it from here; check what it reports."""
    started = time.monotonic()
    timed_from = []
    child = harness_child("child-train", "--budget", repr(budget))

    def on_phase(phase):
        if phase == "training" and not timed_from:
            timed_from.append(time.monotonic())
            print("phase: training", flush=True)

    reader = threading.Thread(target=forward, args=(child.stdout, on_phase), daemon=True)
    reader.start()
    _, status, usage = os.wait4(child.pid, 0)
    ended = time.monotonic()
    end_group(child.pid)  # its output ends when nothing holds the pipe any more
    reader.join(timeout=10)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise Failure("crash", f"training failed ({exit_reason(child.returncode)})")
    if not checkpoint_path().exists():
        raise Failure("crash", "train.py ended without calling save_model(model, config, stats)")
    stats = read_checkpoint_stats()
    reported = float(stats.get("training_seconds", 0.0))
    measured = ended - (timed_from[0] if timed_from else started)
    if reported > budget + overshoot_allowed(budget, stats):
        raise Failure("invalid", f"budget stretched: {reported:.1f}s of training for a {budget:g}s budget")
    slack = max(RUN_SLACK_SECONDS, RUN_SLACK_FRACTION * budget)
    if measured > reported + slack:
        unmarked = "" if timed_from else " (train.py never called training_started(), so from its start)"
        raise Failure("invalid", f"train.py reported {reported:.1f}s of training but the launcher "
                                 f"measured {measured:.1f}s{unmarked}")
    return {
        "startup_seconds": (timed_from[0] if timed_from else ended) - started,
        "measured_training_seconds": measured,
        "training_cpu_seconds": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,  # KiB
    }


def read_checkpoint_stats() -> dict:
    """train.py's figures from the checkpoint, and the parameter count measured here."""
    checkpoint = torch.load(checkpoint_path(), map_location="cpu", weights_only=True)
    count = sum(tensor.numel() for tensor in checkpoint["state_dict"].values())
    return {**checkpoint["stats"], "num_params_M": count / 1e6}


def exit_reason(code: int) -> str:
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"


class ModelProcess:
    """train.py's model in a child process: input batches go in through a pipe, logits come back
    through a buffer this process owns (GPU memory shared over CUDA IPC, else a shared file)."""

    def __init__(self, run_dir: Path, device: torch.device, shape: tuple[int, int, int]):
        self.device = device
        if device.type == "cuda":
            try:
                self.start(self.cuda_buffer(shape))
                return
            except Failure as failure:  # e.g. no CUDA IPC in this container: host memory works
                print(f"CUDA IPC unavailable ({failure.reason}); logits go through host memory", flush=True)
                self.close()
        # in memory (tmpfs) where there is one: a file on disk would write every batch's logits out
        folder = Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else run_dir
        path = folder / f"nanochat_bpb-{os.getpid()}-{id(self)}.logits"
        try:
            self.buffer = torch.from_file(str(path), shared=True, size=math.prod(shape),
                                          dtype=torch.float32).view(shape)
            self.start(("file", str(path), shape))
        finally:
            path.unlink(missing_ok=True)  # both processes have it mapped; nothing is left behind

    def cuda_buffer(self, shape) -> tuple:
        from torch.multiprocessing.reductions import reduce_tensor

        self.buffer = torch.empty(shape, dtype=torch.float32, device=self.device)
        try:
            return ("cuda", reduce_tensor(self.buffer)[1])
        except RuntimeError as error:
            raise Failure("crash", str(error)) from None

    def start(self, spec: tuple) -> None:
        """Start the child, share the buffer, wait until it has opened it and built the model."""
        command_read, self._commands = os.pipe()
        self._replies, reply_write = os.pipe()
        # one compile thread: flex_attention's compiler may not start worker processes there
        self.child = harness_child("child-model", "--fds", f"{command_read},{reply_write}",
                                   pass_fds=(command_read, reply_write),
                                   env={"TORCHINDUCTOR_COMPILE_THREADS": "1"})
        os.close(command_read)
        os.close(reply_write)
        self.commands = os.fdopen(self._commands, "wb")
        self.replies = os.fdopen(self._replies, "rb")
        threading.Thread(target=forward, args=(self.child.stdout,), daemon=True).start()
        write_message(self.commands, pickle.dumps(spec))
        self.expect_reply()  # the buffer is open
        self.expect_reply()  # the model is built

    def expect_reply(self) -> None:
        """Wait for the child's answer; its error text is shown, never interpreted."""
        reply = read_message(self.replies)
        if reply == b"k":
            return
        if reply is None:
            self.child.wait()
            raise Failure("crash", f"the model process ended ({exit_reason(self.child.returncode)})")
        raise Failure("crash", reply[1:].decode("utf-8", errors="replace"))

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """The model's logits for ``inputs`` (rows, T): a copy the child can no longer change."""
        tokens = inputs.to(device="cpu", dtype=torch.int32).numpy()
        write_message(self.commands, struct.pack("<ii", *tokens.shape) + tokens.tobytes())
        self.expect_reply()
        logits = self.buffer[:len(tokens)]
        return logits.clone() if logits.device == self.device else logits.to(self.device)

    def close(self) -> None:
        if hasattr(self, "child"):
            end_group(self.child.pid)
            self.child.wait()
            for stream in (self.commands, self.replies):
                try:
                    stream.close()
                except OSError:  # a pipe the dead child no longer reads
                    pass


def evaluate_bpb(logits_of, rows: torch.Tensor, token_bytes: torch.Tensor, batch_size: int,
                 on_batch=None) -> float:
    """Bits per byte of the validation rows, independent of the vocabulary size:

        val_bpb = sum of -ln p(target) over targets whose byte length > 0
                  / (ln 2 * sum of those targets' byte lengths)

    ``logits_of(inputs)`` gives logits of shape (B, T, vocab) for inputs ``row[:-1]``; targets
    are ``row[1:]``. ``on_batch(index, inputs, logits)`` sees every batch.
    """
    total_nats = torch.zeros((), dtype=torch.float64, device=token_bytes.device)
    total_bytes = torch.zeros((), dtype=torch.float64, device=token_bytes.device)
    for index, start in enumerate(range(0, len(rows), batch_size)):
        batch = rows[start:start + batch_size].to(token_bytes.device)
        inputs, targets = batch[:, :-1], batch[:, 1:]
        logits = logits_of(inputs)
        if on_batch:
            on_batch(index, inputs, logits)
        logp = torch.log_softmax(logits.to(torch.float32), dim=-1)
        nats = -torch.gather(logp, -1, targets.unsqueeze(-1)).squeeze(-1)
        nbytes = token_bytes[targets]
        total_nats += torch.sum(torch.where(nbytes > 0, nats, 0.0), dtype=torch.float64)
        total_bytes += torch.sum(nbytes, dtype=torch.float64)
    if not torch.isfinite(total_nats):
        raise Failure("crash", "the model's logits are not finite (NaN or infinity)")
    return (total_nats / (math.log(2) * total_bytes)).item()


def max_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.max(torch.abs(a.float() - b.float())).item()


def logits_tolerance(device: torch.device) -> float:
    """How far two forward passes that must agree may differ (bf16 kernels round)."""
    return 1e-3 if compute_dtype(device) == torch.float32 else 5e-2


def check_causal(model: ModelProcess, rows: torch.Tensor, batch_size: int, tolerance: float,
                 rng: random.Random) -> None:
    """Every position: a row's logits up to position t must not change when every token after t
    does. For each split s = 1 .. T-1, a base row keeps its first s tokens and takes the rest from
    another validation row (real text, differing at s), and its logits before s must equal the
    base row's. Bases and donors are distinct rows, so no batch holds a base's real future."""
    inputs = rows[:, :-1]
    count, length = inputs.shape
    order = rng.sample(range(count), count)
    bases, donors = order[:min(batch_size, count // 2)], order[min(batch_size, count // 2):]
    if not bases:
        raise Failure("crash", "the validation set needs at least 2 rows: raise EVAL_TOKENS")
    # Every check batch has exactly batch_size rows, as the reference batch does: the same shapes
    # run the same kernels, so an honest model's logits agree to the bit, in bf16 too.
    reference = model.logits(inputs[[bases[i % len(bases)] for i in range(batch_size)]])
    variants = []  # (base index, split, row)
    for split in range(1, length):
        base = (split - 1) % len(bases)
        start = rng.randrange(len(donors))
        donor = next((donors[(start + k) % len(donors)] for k in range(len(donors))
                      if inputs[donors[(start + k) % len(donors)], split] != inputs[bases[base], split]),
                     donors[start])
        variants.append((base, split, torch.cat([inputs[bases[base], :split], inputs[donor, split:]])))
    missing = -len(variants) % batch_size  # fill the last batch with repeats
    variants += (variants * batch_size)[:missing]
    for start in range(0, len(variants), batch_size):
        chunk = variants[start:start + batch_size]
        logits = model.logits(torch.stack([row for _, _, row in chunk]))
        for (base, split, _), got in zip(chunk, logits, strict=True):
            if max_difference(got[:split], reference[base, :split].to(got.device)) > tolerance:
                raise Failure("invalid", f"the model is not causal: its logits before position {split} "
                                         "depend on later tokens")


def evaluate(run_dir: Path, rows: torch.Tensor, token_bytes: torch.Tensor) -> dict:
    """val_bpb of the checkpoint, with the model in its own process; causality is checked first
    and statelessness after, against a fresh model process on randomly chosen batches."""
    device = get_device()
    token_bytes = token_bytes.to(device)
    rng = random.Random(os.urandom(16))  # secret from the model: which rows and batches are checked
    shape = (EVAL_BATCH_SIZE, rows.size(1) - 1, len(token_bytes))
    tolerance = logits_tolerance(device)
    batches = math.ceil(len(rows) / EVAL_BATCH_SIZE)
    replayed = rng.sample(range(batches), min(STATELESS_BATCHES, batches))
    kept = {}

    def keep(index, inputs, logits):
        if index in replayed:
            kept[index] = (inputs, logits)

    model = ModelProcess(run_dir, device, shape)
    try:
        check_causal(model, rows, EVAL_BATCH_SIZE, tolerance, rng)
        val_bpb = evaluate_bpb(model.logits, rows, token_bytes, EVAL_BATCH_SIZE, keep)
    finally:
        model.close()
    fresh = ModelProcess(run_dir, device, shape)
    try:
        for index in rng.sample(replayed, len(replayed)):
            inputs, logits = kept[index]
            if max_difference(fresh.logits(inputs), logits) > tolerance:
                raise Failure("invalid", f"the model gave other logits for evaluation batch {index} "
                                         "in a fresh process (it keeps state across batches)")
    finally:
        fresh.close()
    return {"val_bpb": val_bpb, "eval_tokens": rows[:, 1:].numel()}


def load_eval_rows() -> tuple[torch.Tensor, torch.Tensor]:
    """The validation rows and the token byte table, read before any of train.py's code runs."""
    return torch.from_numpy(np.load(val_rows_path())).long(), get_token_bytes()


def evaluate_run(run_dir: Path, started: float) -> dict:
    """The evaluator: the summary of the checkpoint in ``run_dir``, or raises Failure."""
    rows, token_bytes = load_eval_rows()  # before any of train.py's code runs anywhere
    print("phase: evaluation", flush=True)
    eval_started = time.time()
    result = evaluate(run_dir, rows, token_bytes)
    report_path = run_dir / "train_report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    measured = {  # by the harness; train.py's own figures never override these
        "total_seconds": time.time() - started,
        "eval_seconds": time.time() - eval_started,
    }
    report.pop("status", None)
    summary = {**read_checkpoint_stats(), **report, **measured, **result}
    if summary.get("measured_training_seconds") and "total_tokens_M" in summary:  # train.py's count
        summary["tokens_per_second"] = summary["total_tokens_M"] * 1e6 / summary["measured_training_seconds"]
    return summary


SUMMARY_FORMAT = {  # the original's keys and formats first, then the harness's additions
    "val_bpb": "{:.6f}", "training_seconds": "{:.1f}", "total_seconds": "{:.1f}",
    "peak_vram_mb": "{:.1f}", "mfu_percent": "{:.2f}", "total_tokens_M": "{:.1f}",
    "num_steps": "{}", "num_params_M": "{:.1f}", "depth": "{}", "startup_seconds": "{:.1f}",
    "measured_training_seconds": "{:.1f}", "training_cpu_seconds": "{:.1f}", "eval_seconds": "{:.1f}",
    "eval_tokens": "{}", "peak_rss_mb": "{:.1f}", "tokens_per_second": "{:.0f}",
}


def print_summary(summary: dict) -> dict:
    print("---")
    for key, fmt in SUMMARY_FORMAT.items():
        if key in summary:
            print(f"{key + ':':<17} {fmt.format(summary[key])}")
    return summary


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


def write_result(path: Path, work) -> None:
    """Run ``work()``; write its outcome with a status (ok, invalid or crash) to ``path``."""
    not_dumpable()
    try:
        outcome = {"status": "ok", **work()}
    except Failure as failure:
        outcome = {"status": failure.status, "reason": failure.reason}
        print(failure.reason, flush=True)
    path.write_text(json.dumps(outcome))


def main() -> None:
    # train.py's `import prepare` loads a copy of this file as its own module, in a child
    # process: whatever it changes there, the launcher's and the evaluator's processes never see.
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command")
    train = commands.add_parser("train", help="the launcher: train.py under the budget")
    train.add_argument("--budget", type=float, default=TIME_BUDGET)
    train.add_argument("--run-dir", type=Path, required=True)
    evaluate = commands.add_parser("eval", help="the evaluator: val_bpb of the model saved in RUN_DIR")
    evaluate.add_argument("--run-dir", type=Path, required=True)
    evaluate.add_argument("--started", type=float, default=None, help="when the measurement began")
    child_train = commands.add_parser("child-train", help="internal: the launcher's child")
    child_train.add_argument("--budget", type=float, required=True)
    child_model = commands.add_parser("child-model", help="internal: the evaluator's child")
    child_model.add_argument("--fds", required=True)
    args = parser.parse_args()
    here = Path(__file__).resolve().parent
    if args.command is None:
        prepare()
    elif args.command == "child-train":
        run_training(here / "train.py", args.budget)
    elif args.command == "child-model":
        serve_model(here / "train.py", *map(int, args.fds.split(",")))
    else:
        args.run_dir.mkdir(parents=True, exist_ok=True)
        os.environ[CHECKPOINT_ENV] = str(args.run_dir.resolve() / "model.pt")
        if args.command == "train":
            write_result(args.run_dir / "train_report.json", lambda: launch_training(args.budget))
        else:
            started = args.started or time.time()
            summary = lambda: print_summary(evaluate_run(args.run_dir, started))  # noqa: E731
            write_result(args.run_dir / "result.json", summary)


if __name__ == "__main__":
    main()
