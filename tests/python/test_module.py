"""A state dict from umload goes into torch modules shaped like GptOss with load_state_dict
(strict=True), and its tensors outlive every other reference to the loaded set."""
import gc
import os
import sys
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import umload  # noqa: E402

torch = common.optional("torch")


def expert_block(config):
    """One decoder layer's MLP as HF's GptOss holds it: router + experts, BF16, names as stored."""
    E = config["num_local_experts"]
    H = config["hidden_size"]
    I = config["intermediate_size"]

    class experts(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gate_up_proj = torch.nn.Parameter(torch.empty(E, H, 2 * I, dtype=torch.bfloat16))
            self.gate_up_proj_bias = torch.nn.Parameter(torch.empty(E, 2 * I, dtype=torch.bfloat16))
            self.down_proj = torch.nn.Parameter(torch.empty(E, I, H, dtype=torch.bfloat16))
            self.down_proj_bias = torch.nn.Parameter(torch.empty(E, H, dtype=torch.bfloat16))

    class mlp(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.router = torch.nn.Linear(H, E, dtype=torch.bfloat16)
            self.experts = experts()

    class layer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.mlp = mlp()

    return layer()


@unittest.skipIf(torch is None, "torch is not installed")
class load_state_dict(common.checkpoint_case):
    def config(self):
        import json
        with open(os.path.join(self.ckpt, "config.json")) as f:
            return json.load(f)

    def test_strict_load_of_one_layer(self):
        state = umload.load(self.ckpt, device="cpu")
        prefix = "model.layers.1."
        layer_state = {k[len(prefix):]: v for k, v in state.items()
                       if k.startswith(prefix + "mlp.")}
        block = expert_block(self.config())
        result = block.load_state_dict(layer_state, strict=True)
        self.assertEqual(list(result.missing_keys), [])
        self.assertEqual(list(result.unexpected_keys), [])
        self.assertTrue(torch.equal(block.mlp.experts.down_proj, state[prefix + "mlp.experts.down_proj"]))
        self.assertTrue(torch.equal(block.mlp.router.weight, state[prefix + "mlp.router.weight"]))
        # The block computes: one expert's gate_up on a token, in the hf [in, out] orientation.
        x = torch.ones(1, self.config()["hidden_size"], dtype=torch.bfloat16)
        y = x @ block.mlp.experts.gate_up_proj[0] + block.mlp.experts.gate_up_proj_bias[0]
        self.assertEqual(tuple(y.shape), (1, 2 * self.config()["intermediate_size"]))

    def test_strict_load_of_a_rank_slice(self):
        config = dict(self.config())
        config["num_local_experts"] //= 2
        state = umload.load(self.ckpt, device="cpu", rank=1, world_size=2)
        prefix = "model.layers.0."
        layer_state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix + "mlp.")}
        # The router stays whole on every rank: the block's router routes over all experts.
        block = expert_block(config)
        block.mlp.router = torch.nn.Linear(config["hidden_size"], self.config()["num_local_experts"],
                                           dtype=torch.bfloat16)
        block.load_state_dict(layer_state, strict=True)

    def test_strict_load_of_the_whole_layer_set(self):
        state = umload.load(self.ckpt, device="cpu")
        # Every tensor of the checkpoint: a module holding each as a buffer, by name.
        holder = torch.nn.Module()
        for name, t in state.items():
            holder.register_buffer(name.replace(".", "__"), torch.empty_like(t))
        holder.load_state_dict({k.replace(".", "__"): v for k, v in state.items()}, strict=True)


class lifetime(common.checkpoint_case):
    @unittest.skipIf(torch is None, "torch is not installed")
    def test_tensor_outlives_the_dict(self):
        name = "model.layers.1.mlp.experts.gate_up_proj"
        state = umload.load(self.ckpt, device="cpu")
        kept = state[name]
        want = kept.clone()
        del state
        gc.collect()
        # Reuse the freed memory with other loads; the kept tensor must not change.
        others = [umload.load(self.ckpt, device="cpu", layout="native") for _ in range(3)]
        del others
        gc.collect()
        self.assertTrue(torch.equal(kept, want))
        expected = common.expected_state(self.ckpt)[name]
        np.testing.assert_array_equal(common.as_numpy_bits(kept), expected)

    @unittest.skipIf(torch is None, "torch is not installed")
    def test_view_keeps_memory(self):
        state = umload.load(self.ckpt, device="cpu")
        view = state["model.embed_tokens.weight"][3:5]
        want = view.clone()
        del state
        gc.collect()
        umload.load(self.ckpt, device="cpu")
        self.assertTrue(torch.equal(view, want))

    def test_numpy_array_outlives_the_dict(self):
        name = "model.layers.0.mlp.experts.down_proj"
        state = umload.load(self.ckpt, device="cpu", framework="numpy")
        kept = state[name]
        want = kept.copy()
        del state
        gc.collect()
        umload.load(self.ckpt, device="cpu", framework="numpy", layout="native")
        np.testing.assert_array_equal(kept, want)

    def test_numpy_arrays_wrap_umload_memory(self):
        # No copy: each array views memory it does not own, kept alive by its base object.
        state = umload.load(self.ckpt, device="cpu", framework="numpy")
        for name, a in state.items():
            self.assertFalse(a.flags.owndata, name)
            self.assertIsNotNone(a.base, name)

if __name__ == "__main__":
    unittest.main(verbosity=2)
