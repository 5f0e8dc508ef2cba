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

# name -> (output path, synthetic description, gpus, gpu memory nodes)
# gpus: (package os_index, bus id, pci device id); memory nodes: (os_index, bytes, bus id)
GiB = 1 << 30
TOPOLOGIES = {
    "h100-pcie": (ROOT / "platform/profiles/h100-pcie.xml",
                  f"pack:2 numa:1(memory={256 * GiB}) core:32 pu:2",
                  [(1, "0000:ca:00.0", "2331")], []),
    "h100-sxm": (ROOT / "platform/profiles/h100-sxm.xml",
                 f"pack:2 numa:1(memory={1024 * GiB}) core:56 pu:2",
                 [(0, "0000:1b:00.0", "2330"), (0, "0000:43:00.0", "2330"),
                  (0, "0000:52:00.0", "2330"), (0, "0000:61:00.0", "2330"),
                  (1, "0000:9d:00.0", "2330"), (1, "0000:c3:00.0", "2330"),
                  (1, "0000:d1:00.0", "2330"), (1, "0000:df:00.0", "2330")], []),
    "h200": (ROOT / "platform/profiles/h200.xml",
             f"pack:2 numa:1(memory={1024 * GiB}) core:56 pu:2",
             [(0, "0000:1b:00.0", "2335"), (0, "0000:43:00.0", "2335"),
              (0, "0000:52:00.0", "2335"), (0, "0000:61:00.0", "2335"),
              (1, "0000:9d:00.0", "2335"), (1, "0000:c3:00.0", "2335"),
              (1, "0000:d1:00.0", "2335"), (1, "0000:df:00.0", "2335")], []),
    "gh200": (ROOT / "platform/profiles/gh200.xml",
              "pack:1 numa:1(memory=480000000000) core:72 pu:1",
              [(0, "0009:01:00.0", "2342")], [(1, 96000000000, "0009:01:00.0")]),
    "gh200-144g": (ROOT / "platform/profiles/gh200-144g.xml",
                   "pack:1 numa:1(memory=480000000000) core:72 pu:1",
                   [(0, "0009:01:00.0", "2348")], [(1, 144000000000, "0009:01:00.0")]),
    "gb200": (ROOT / "platform/profiles/gb200.xml",
              "pack:1 numa:1(memory=480000000000) core:72 pu:1",
              [(0, "0008:01:00.0", "2941"), (0, "0009:01:00.0", "2941")],
              [(1, 186000000000, "0008:01:00.0"), (2, 186000000000, "0009:01:00.0")]),
    "dgx-spark": (ROOT / "platform/profiles/dgx-spark.xml",
                  "pack:1 numa:1(memory=128520671232) core:20 pu:1",
                  [(0, "000f:01:00.0", "2e12")], []),
    # Test fixtures: small, one fact each.
    "fixture-gh200-like": (ROOT / "tests/platform/fixtures/gh200_like.xml",
                           "pack:1 numa:1(memory=480000000000) core:8 pu:1",
                           [(0, "0009:01:00.0", "2342")], [(1, 96000000000, "0009:01:00.0")]),
    "fixture-spark": (ROOT / "tests/platform/fixtures/spark.xml",
                      "pack:1 numa:1(memory=128520671232) core:20 pu:1",
                      [(0, "000f:01:00.0", "2e12")], []),
    "fixture-two-socket": (ROOT / "tests/platform/fixtures/two_socket.xml",
                           f"pack:2 numa:1(memory={64 * GiB}) core:4 pu:2",
                           [(1, "0000:ca:00.0", "2330")], []),
}


def mask(bits):
    value = sum(1 << b for b in bits)
    return f"0x{value:08x}"


def build(name, out, synthetic, gpus, memory_nodes):
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
        all_nodes = [0] + [n for n, _, _ in memory_nodes]
        full = mask(all_nodes)
        for obj in machine.iter("object"):
            if obj.get("type") != "NUMANode" and obj.get("nodeset"):
                obj.set("nodeset", full)
                obj.set("complete_nodeset", full)
        machine.set("allowed_nodeset", full)
        pkg = packages[0]
        cpuset = pkg.get("cpuset")
        first_child = list(pkg).index(pkg.find("object[@type='NUMANode']")) + 1
        for i, (os_index, size, bus) in enumerate(memory_nodes):
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
    ET.indent(tree, "  ")
    body = ET.tostring(root, encoding="unicode")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE topology SYSTEM "hwloc2.dtd">\n'
                   + body + "\n")
    subprocess.run(["lstopo-no-graphics", "-i", str(out), "--of", "console"], check=True, stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    for name, (out, synthetic, gpus, memory_nodes) in TOPOLOGIES.items():
        build(name, out, synthetic, gpus, memory_nodes)
        print(f"wrote {out.relative_to(ROOT)}", file=sys.stderr)
