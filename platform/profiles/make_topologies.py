#!/usr/bin/env python3
"""Writes the hwloc XML (format 2.0) of the built-in profiles and of the test fixtures.

The CPU part comes from an hwloc synthetic description rendered by lstopo (hwloc 2.9); the parts
synthetic descriptions cannot express are added by hand below: PCI GPUs (bridge + PCIDev, found by
bus id) and CPU-less GPU-memory NUMA nodes (subtype GPUMemory, info PCIBusID), as hwloc 2.9 shows
them on GH200 with HWLOC_KEEP_NVIDIA_GPU_NUMA_NODES=1. Facts and their sources: docs/platforms.md.
Run from the repository root:  python3 platform/profiles/make_topologies.py
"""
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# name -> (output path, synthetic description, gpus, gpu memory nodes[, cpu kinds])
# gpus: (package os_index, bus id, pci device id); memory nodes: (package os_index, os_index,
# bytes, bus id); cpu kinds: (PU list, forced efficiency, {info name: value}), least efficient
# first. The source of every figure is in docs/platforms.md ("Profile figures and their sources").
GiB = 1 << 30
MiB = 1 << 20


def interleaved(packages, cores, threads):
    """PU os indexes in hwloc's logical order when Linux numbers the first thread of every core
    first (0-55 on socket 0, 56-111 on socket 1) and the siblings after (112-167, 168-223)."""
    total = packages * cores
    return ",".join(str(p * cores + c + t * total)
                    for p in range(packages) for c in range(cores) for t in range(threads))


DGX_CPUS = f"pack:2 numa:1(memory={1024 * GiB}) core:56 pu:2(indexes={interleaved(2, 56, 2)})"
DGX_GPUS = [(0, "0000:1b:00.0"), (0, "0000:43:00.0"), (0, "0000:52:00.0"), (0, "0000:61:00.0"),
            (1, "0000:9d:00.0"), (1, "0000:c3:00.0"), (1, "0000:d1:00.0"), (1, "0000:df:00.0")]
GRACE_NODE = 490037 * MiB           # one Grace's LPDDR5X as Linux shows it (490,037 MiB)
GH200_HBM = 97280 * MiB             # GH200 96 GB: HBM as NUMA node 1
GH200_144G_HBM = 146831 * MiB       # nvidia-smi's figure (the NUMA node size is unconfirmed)
GB200_HBM = 189471 * MiB            # nvidia-smi's figure per GPU
SPARK_NODE = 128520671232           # hwloc's DGX Spark dump: NUMA node 0
# DGX Spark (hwloc tests/hwloc/linux/nvidia-dgx-gb10): Cortex-A725 on CPUs 0-4,10-14 (Linux
# capacity 718, MIDR part 0xd87), Cortex-X925 on 5-9,15-19 (capacity 997, part 0xd85).
SPARK_KINDS = [([0, 1, 2, 3, 4, 10, 11, 12, 13, 14], 718, {"LinuxCapacity": "718", "CPUPart": "0xd87"}),
               ([5, 6, 7, 8, 9, 15, 16, 17, 18, 19], 997, {"LinuxCapacity": "997", "CPUPart": "0xd85"})]
SPARK_CPUS = f"pack:1 numa:1(memory={SPARK_NODE}) l3:2 core:10 pu:1"
TOPOLOGIES = {
    "h100-pcie": (ROOT / "platform/profiles/h100-pcie.xml",
                  f"pack:2 numa:1(memory={256 * GiB}) core:32 pu:2",
                  [(1, "0000:ca:00.0", "2331")], []),
    "h100-sxm": (ROOT / "platform/profiles/h100-sxm.xml", DGX_CPUS,
                 [(pkg, bus, "2330") for pkg, bus in DGX_GPUS], []),
    "h200": (ROOT / "platform/profiles/h200.xml", DGX_CPUS,
             [(pkg, bus, "2335") for pkg, bus in DGX_GPUS], []),
    "gh200": (ROOT / "platform/profiles/gh200.xml",
              f"pack:1 numa:1(memory={GRACE_NODE}) core:72 pu:1",
              [(0, "0009:01:00.0", "2342")], [(0, 1, GH200_HBM, "0009:01:00.0")]),
    "gh200-144g": (ROOT / "platform/profiles/gh200-144g.xml",
                   f"pack:1 numa:1(memory={GRACE_NODE}) core:72 pu:1",
                   [(0, "0009:01:00.0", "2348")], [(0, 1, GH200_144G_HBM, "0009:01:00.0")]),
    # A GB200 compute tray: two Grace CPUs (NUMA nodes 0 and 1) and four GPUs, two per Grace; in
    # NUMA mode (drivers before R580's CDMM) GPU memory is nodes 2, 10, 18 and 26.
    "gb200": (ROOT / "platform/profiles/gb200.xml",
              f"pack:2 numa:1(memory={GRACE_NODE}) core:72 pu:1",
              [(0, "0008:01:00.0", "2941"), (0, "0009:01:00.0", "2941"),
               (1, "0018:01:00.0", "2941"), (1, "0019:01:00.0", "2941")],
              [(0, 2, GB200_HBM, "0008:01:00.0"), (0, 10, GB200_HBM, "0009:01:00.0"),
               (1, 18, GB200_HBM, "0018:01:00.0"), (1, 26, GB200_HBM, "0019:01:00.0")]),
    "dgx-spark": (ROOT / "platform/profiles/dgx-spark.xml", SPARK_CPUS,
                  [(0, "000f:01:00.0", "2e12")], [], SPARK_KINDS),
    # Later Sparks: the same machine with the memory Linux reports there (127,600,748 kB).
    "dgx-spark-121g": (ROOT / "platform/profiles/dgx-spark-121g.xml",
                       f"pack:1 numa:1(memory={127600748 * 1024}) l3:2 core:10 pu:1",
                       [(0, "000f:01:00.0", "2e12")], [], SPARK_KINDS),
    # Test fixtures: small, one fact each.
    "fixture-gh200-like": (ROOT / "tests/platform/fixtures/gh200_like.xml",
                           "pack:1 numa:1(memory=480000000000) core:8 pu:1",
                           [(0, "0009:01:00.0", "2342")], [(0, 1, 96000000000, "0009:01:00.0")]),
    "fixture-spark": (ROOT / "tests/platform/fixtures/spark.xml",
                      "pack:1 numa:1(memory=128520671232) core:20 pu:1",
                      [(0, "000f:01:00.0", "2e12")], []),
    "fixture-two-socket": (ROOT / "tests/platform/fixtures/two_socket.xml",
                           f"pack:2 numa:1(memory={64 * GiB}) core:4 pu:2",
                           [(1, "0000:ca:00.0", "2330")], []),
    # Two kinds whose fast cores are not the first ones: 0-3 efficiency cores with no efficiency
    # figure of their own but a CoreType, 4-7 performance cores.
    "fixture-two-kinds": (ROOT / "tests/platform/fixtures/two_kinds.xml",
                          "pack:1 numa:1(memory=17179869184) core:8 pu:1",
                          [(0, "0000:01:00.0", "2330")], [],
                          [([0, 1, 2, 3], 0, {"CoreType": "IntelAtom"}),
                           ([4, 5, 6, 7], 1, {"CoreType": "IntelCore"})]),
}


def mask_value(value):
    """hwloc's bitmap syntax: 32-bit words, most significant first."""
    words = []
    while True:
        words.append(f"0x{value & 0xffffffff:08x}")
        value >>= 32
        if not value:
            break
    return ",".join(reversed(words))


def mask(bits):
    return mask_value(sum(1 << b for b in bits))


def parse_mask(text):
    return int(text.replace(",0x", "").replace("0x", ""), 16)


def build(name, out, synthetic, gpus, memory_nodes, cpu_kinds=()):
    with tempfile.NamedTemporaryFile(suffix=".xml") as tmp:
        subprocess.run(["lstopo-no-graphics", "-i", synthetic, "--of", "xml", "-f", tmp.name], check=True)
        tree = ET.parse(tmp.name)
    root = tree.getroot()
    machine = root.find("object")
    for info in list(machine.findall("info")):
        if info.get("name") in ("ProcessName", "SyntheticDescription", "Backend"):
            machine.remove(info)
    infos = machine.findall("info")
    at = list(machine).index(infos[-1]) + 1 if infos else 0
    machine.insert(at, ET.Element("info", {"name": "umloadTopology", "value": name}))
    gp = 10000
    packages = {int(p.get("os_index")): p for p in machine.findall("object[@type='Package']")}
    if memory_nodes:
        # Each GPU-memory node joins the nodesets of its package (and everything in it) and of
        # the machine; it sits beside the package's CPU node, with the package's cpuset.
        def add_nodes(obj, bits):
            if obj.get("type") == "NUMANode" or not obj.get("nodeset"):
                return
            for attr in ("nodeset", "complete_nodeset"):
                obj.set(attr, mask_value(parse_mask(obj.get(attr)) | bits))
        every = sum(1 << n for _, n, _, _ in memory_nodes)
        add_nodes(machine, every)
        machine.set("allowed_nodeset", mask_value(parse_mask(machine.get("allowed_nodeset")) | every))
        for pkg_index, pkg in packages.items():
            mine = [(n, size, bus) for p, n, size, bus in memory_nodes if p == pkg_index]
            if not mine:
                continue
            bits = sum(1 << n for n, _, _ in mine)
            for obj in pkg.iter("object"):
                add_nodes(obj, bits)
            cpuset = pkg.get("cpuset")
            first_child = list(pkg).index(pkg.find("object[@type='NUMANode']")) + 1
            for i, (os_index, size, bus) in enumerate(mine):
                gp += 1
                node = ET.Element("object", {
                    "type": "NUMANode", "os_index": str(os_index), "cpuset": cpuset,
                    "complete_cpuset": cpuset, "nodeset": mask([os_index]),
                    "complete_nodeset": mask([os_index]), "gp_index": str(gp),
                    "local_memory": str(size), "subtype": "GPUMemory"})
                ET.SubElement(node, "info", {"name": "PCIBusID", "value": bus})
                pkg.insert(first_child + i, node)
    for pkg_index, bus, device in gpus:
        domain, rest = bus.split(":", 1)
        bus_number = rest.split(":")[0]
        gp += 2
        bridge = ET.SubElement(packages[pkg_index], "object", {
            "type": "Bridge", "gp_index": str(gp), "bridge_type": "0-1", "depth": "0",
            "bridge_pci": f"{domain}:[{bus_number}-{bus_number}]"})
        ET.SubElement(bridge, "object", {
            "type": "PCIDev", "gp_index": str(gp + 1), "pci_busid": bus,
            "pci_type": f"0302 [10de:{device}] [10de:0000] a1", "pci_link_speed": "0.000000"})
    for pus, efficiency, kind_infos in cpu_kinds:
        kind = ET.SubElement(root, "cpukind", {"cpuset": mask(pus), "forced_efficiency": str(efficiency)})
        for key, value in kind_infos.items():
            ET.SubElement(kind, "info", {"name": key, "value": value})
    ET.indent(tree, "  ")
    body = ET.tostring(root, encoding="unicode")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE topology SYSTEM "hwloc2.dtd">\n'
                   + body + "\n")
    subprocess.run(["lstopo-no-graphics", "-i", str(out), "--of", "console"], check=True, stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    for name, (out, synthetic, gpus, memory_nodes, *kinds) in TOPOLOGIES.items():
        build(name, out, synthetic, gpus, memory_nodes, *kinds)
        print(f"wrote {out.relative_to(ROOT)}", file=sys.stderr)
