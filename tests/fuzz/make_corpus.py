#!/usr/bin/env python3
"""Seed corpora for the fuzz targets, made fresh from `umload synth` (a minimal tiny checkpoint)
plus one seed per known defect, so the fuzzers start on both sides of every rule.

    make_corpus.py UMLOAD_BINARY OUT_DIR    -> OUT_DIR/{safetensors,index,config,model_map}/
"""
import json
import os
import struct
import subprocess
import sys
import tempfile


def header_file(entries, data_len=None, pad=True):
    text = json.dumps(entries, separators=(",", ":"))
    if pad:
        text += " " * ((8 - len(text) % 8) % 8)
    if data_len is None:
        data_len = max([e["data_offsets"][1] for k, e in entries.items() if k != "__metadata__"] or [0])
    return struct.pack("<Q", len(text)) + text.encode() + b"\x22" * data_len


def read_header(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8 : 8 + n]), blob


def pack(files, retile=1):
    """The fuzz_model_map archive: flags, then (name, content, sparse tail) records."""
    out = bytes([retile])
    for name, content, tail in files:
        out += bytes([len(name)]) + name.encode() + struct.pack("<I", len(content)) + content
        out += struct.pack("<I", tail)
    return out


def shard_record(name, header, data_len):
    text = json.dumps(header, separators=(",", ":"))
    return (name, struct.pack("<Q", len(text)) + text.encode(), data_len)


def main():
    umload, out = sys.argv[1], sys.argv[2]
    dirs = {k: os.path.join(out, k) for k in ("safetensors", "index", "config", "model_map")}
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)

    def put(kind, name, data):
        with open(os.path.join(dirs[kind], name), "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = os.path.join(tmp, "tiny")
        subprocess.run([umload, "synth", "--preset", "tiny", "--layers", "1", "--experts", "1",
                        "--hidden", "32", "--intermediate", "32", "--vocab", "8", "--out", ckpt],
                       check=True, stdout=subprocess.DEVNULL)
        shards = sorted(f for f in os.listdir(ckpt) if f.endswith(".safetensors"))
        with open(os.path.join(ckpt, "model.safetensors.index.json")) as f:
            index = json.load(f)
        with open(os.path.join(ckpt, "config.json")) as f:
            config = json.load(f)
        headers = {}
        for s in shards:
            headers[s], blob = read_header(os.path.join(ckpt, s))
            put("safetensors", "synth-" + s, blob)
        put("index", "synth", json.dumps(index, indent=2))
        put("config", "synth", json.dumps(config, indent=2))

    # safetensors: one seed per rule of the format.
    a = {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}
    put("safetensors", "ok-metadata", header_file({"__metadata__": {"format": "pt"}, "a": a}))
    put("safetensors", "ok-zero-size", header_file({"z": {"dtype": "BF16", "shape": [0, 3], "data_offsets": [0, 0]}, "a": a}))
    put("safetensors", "short", b"abc")
    put("safetensors", "header-past-eof", struct.pack("<Q", 500) + b"{}")
    put("safetensors", "huge-header", struct.pack("<Q", 200_000_000) + b" " * 16)
    put("safetensors", "gap", header_file({"a": a, "b": {"dtype": "U8", "shape": [4], "data_offsets": [8, 12]}}))
    put("safetensors", "overlap", header_file({"a": a, "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}}))
    put("safetensors", "trailing", header_file({"a": a}, data_len=9))
    put("safetensors", "size-mismatch", header_file({"a": {"dtype": "BF16", "shape": [4], "data_offsets": [0, 4]}}))
    put("safetensors", "f4", header_file({"a": {"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}}))
    put("safetensors", "absurd", header_file({"a": {"dtype": "F32", "shape": [2**32, 2**32, 2**32], "data_offsets": [0, 4]}}))
    put("safetensors", "rank9", header_file({"a": {"dtype": "U8", "shape": [1] * 9, "data_offsets": [0, 1]}}))
    put("safetensors", "deep", struct.pack("<Q", 60) + b'{"a":{"dtype":"U8","shape":[[[[[1]]]]],"data_offsets":[0,1]}}' + b"\x00")

    # The reference reader's rules (tests/reliability/reference/cases.py has them all): bytes
    # around the JSON value, fields repeated or unknown, -0, sizes past 64 bits, FNUZ dtypes.
    def raw(name, text, data=b""):
        text = text.encode()
        put("safetensors", name, struct.pack("<Q", len(text)) + text + data)
    ok = '"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}'
    raw("leading-whitespace", "\n\t\r {" + ok + "}", b"abcd")
    raw("nul-after-json", "{" + ok + "}\0\0\0", b"abcd")
    raw("nul-then-header", "{" + ok + '}\0{"b":{}}', b"abcd")
    raw("dtype-twice", '{"a":{"dtype":"F16","dtype":"BF16","shape":[2],"data_offsets":[0,4]}}', b"abcd")
    raw("minus-zero", '{"a":{"dtype":"U8","shape":[-0],"data_offsets":[0,-0]}}')
    raw("unknown-fields", '{"a":{"dtype":"U8","x":{"y":[1,-0,{"z":null}]},"shape":[4],"data_offsets":[0,4]}}', b"abcd")
    raw("deep-unknown", '{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4],"x":' + "[" * 125 + "]" * 125 + "}}", b"abcd")
    raw("metadata-null", '{"__metadata__":null,' + ok + "}", b"abcd")
    raw("fnuz", '{"a":{"dtype":"F8_E4M3FNUZ","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"F8_E5M2FNUZ","shape":[2],"data_offsets":[2,4]}}', b"abcd")
    raw("wrap-16", '{"a":{"dtype":"U8","shape":[2,9223372036854775816],"data_offsets":[0,16]}}', b"\0" * 16)
    raw("zero-before-huge", '{"a":{"dtype":"U8","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}}')
    raw("rank-40", '{"a":{"dtype":"U8","shape":[' + "1," * 39 + '4],"data_offsets":[0,4]}}', b"abcd")

    # index: names that escape, missing shards, ghost tensors, bad total_size.
    def index_variant(name, edit):
        doc = json.loads(json.dumps(index))
        edit(doc)
        put("index", name, json.dumps(doc))
    first = sorted(index["weight_map"])[0]
    index_variant("escape-dotdot", lambda d: d["weight_map"].__setitem__(first, "../outside.safetensors"))
    index_variant("escape-absolute", lambda d: d["weight_map"].__setitem__(first, "/etc/hostname"))
    index_variant("symlink-out", lambda d: d["weight_map"].__setitem__(first, "link.safetensors"))
    index_variant("missing-shard", lambda d: d["weight_map"].__setitem__(first, "model-00009-of-00009.safetensors"))
    index_variant("ghost-tensor", lambda d: d["weight_map"].__setitem__("model.ghost", shards[0]))
    index_variant("total-size", lambda d: d["metadata"].__setitem__("total_size", 1.5))
    index_variant("dropped-entry", lambda d: d["weight_map"].pop(first))

    # config: not GPT-OSS, sizes that disagree, wrong types.
    def config_variant(name, edit):
        doc = json.loads(json.dumps(config))
        edit(doc)
        put("config", name, json.dumps(doc))
    config_variant("llama", lambda c: c.__setitem__("model_type", "llama"))
    config_variant("hidden-96", lambda c: c.update(hidden_size=96, intermediate_size=96))
    config_variant("experts-3", lambda c: c.__setitem__("num_local_experts", 3))
    config_variant("negative", lambda c: c.__setitem__("hidden_size", -32))
    config_variant("quant-not-object", lambda c: c.__setitem__("quantization_config", "mxfp4"))

    # model_map: the whole checkpoint as an archive (headers plus sparse data), and defects.
    def archive(name, edit_headers=None, edit_index=None, edit_config=None, retile=1):
        h = json.loads(json.dumps(headers))
        idx = json.loads(json.dumps(index))
        cfg = json.loads(json.dumps(config))
        if edit_headers:
            edit_headers(h)
        if edit_index:
            edit_index(idx)
        if edit_config:
            edit_config(cfg)
        files = []
        for s in shards:
            data = max([e["data_offsets"][1] for k, e in h[s].items() if k != "__metadata__"] or [0])
            files.append(shard_record(s, h[s], data))
        files.append(("model.safetensors.index.json", json.dumps(idx).encode(), 0))
        files.append(("config.json", json.dumps(cfg).encode(), 0))
        put("model_map", name, pack(files, retile))

    def where(h, suffix):
        for s in shards:
            for k in h[s]:
                if k.endswith(suffix):
                    return s, k
        raise KeyError(suffix)

    archive("synth")
    archive("synth-raw", retile=0)
    def dtype_i8(h):
        s, k = where(h, "down_proj_scales")
        h[s][k]["dtype"] = "I8"
    archive("pair-dtype", dtype_i8)
    def last_dim_8(h):
        s, k = where(h, "gate_up_proj_blocks")
        h[s][k]["shape"][-1] = 8
    archive("blocks-last-dim", last_dim_8)
    def zero_experts(h):
        s, k = where(h, "down_proj_blocks")
        h[s][k]["shape"][0] = 0
    archive("zero-dim", zero_experts)
    def duplicate(h):
        s, k = where(h, "down_proj_scales")
        other = [x for x in shards if x != s][0]
        h[other][k] = h[s][k]
    archive("duplicate-across-shards", duplicate)
    archive("not-gpt-oss", edit_config=lambda c: c.__setitem__("model_type", "llama"))


if __name__ == "__main__":
    main()
