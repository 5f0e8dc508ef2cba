"""umload's NeMo-named output against NVIDIA NeMo Automodel's own GPT-OSS state-dict adapter
(nemo-automodel of src/python/requirements-nemo.txt, run in its venv, build/venv-nemo):
GPTOSSStateDictAdapter.from_hf on the checkpoint as safetensors reads it equals
umload.load(path, names="nemo"), the same names and every tensor bit for bit; and a DTensor load
renamed the same way. The adapter is built as NeMo's own unit tests build it, from mocked MoE and
backend configs: from_hf reads neither."""
import glob
import os
import sys
import unittest
from unittest import mock

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import umload  # noqa: E402

torch = common.optional("torch")
safetensors_torch = common.optional("safetensors.torch")
adapter_module = common.optional("nemo_automodel.components.models.gpt_oss.state_dict_adapter")
TINY = ("--hidden", "64", "--intermediate", "96", "--experts", "4", "--layers", "2")


def nemo_from_hf(path):
    """NeMo Automodel's way: every shard through safetensors, then its adapter's from_hf."""
    from transformers import AutoConfig
    from nemo_automodel.components.models.common import BackendConfig
    from nemo_automodel.components.moe.config import MoEConfig
    state = {}
    for shard in sorted(glob.glob(os.path.join(path, "*.safetensors"))):
        state.update(safetensors_torch.load_file(shard))
    backend = mock.Mock(spec=BackendConfig)
    backend.attn = "sdpa"  # not TE: sinks keep transformers' name
    adapter = adapter_module.GPTOSSStateDictAdapter(AutoConfig.from_pretrained(path), mock.Mock(spec=MoEConfig),
                                                    backend, dtype=torch.bfloat16)
    return adapter.from_hf(state)


@unittest.skipUnless(torch is not None and adapter_module is not None and safetensors_torch is not None,
                     "NeMo Automodel is not installed in this interpreter (build/venv-nemo has it)")
class nemo_adapter_parity(common.checkpoint_case):
    synth_args = TINY

    def test_from_hf_equals_umload_nemo_names_bit_for_bit(self):
        theirs = nemo_from_hf(self.ckpt)
        ours = umload.load(self.ckpt, device="cpu", names="nemo")
        self.assertEqual(sorted(theirs), sorted(ours))
        renamed = [n for n in ours if n.endswith((".mlp.gate.weight", ".mlp.experts.gate_and_up_projs",
                                                   ".mlp.experts.down_projs"))]
        self.assertEqual(len(renamed), 3 * 2)
        for name, t in theirs.items():
            with self.subTest(name=name):
                self.assertEqual(t.dtype, ours[name].dtype)
                self.assertEqual(tuple(t.shape), tuple(ours[name].shape))
                np.testing.assert_array_equal(common.as_numpy_bits(t), common.as_numpy_bits(ours[name]))

    def test_the_mapping_is_nemos(self):
        # umload's names, derived from the transformers names, are the ones the adapter maps to.
        adapter = adapter_module.GPTOSSStateDictAdapter(mock.Mock(), mock.Mock(), mock.Mock(attn="sdpa"))
        for hf_suffix, nemo_suffix in adapter.hf_to_internal_map.items():
            name = "model.layers.3." + hf_suffix
            self.assertEqual(umload.nemo.nemo_name(name), "model.layers.3." + nemo_suffix)
        self.assertEqual(umload.nemo.nemo_name("model.layers.0.self_attn.sinks"), "model.layers.0.self_attn.sinks")


if __name__ == "__main__":
    unittest.main(verbosity=2)
