"""Monte-Carlo dropout: switching, BatchNorm untouched, estimators, batched == looped."""

import warnings

import pytest
import torch

import dropkit
from dropkit import _state, mc
from dropkit import functional as F
from dropkit import nn as dnn


def make_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 32), torch.nn.BatchNorm1d(32), torch.nn.ReLU(),
        dnn.Dropout(0.5), torch.nn.Linear(32, 32), torch.nn.ReLU(),
        dnn.Dropout(0.3), torch.nn.Linear(32, 4),
    ).double()  # fmt: skip


class FunctionalDrop(torch.nn.Module):
    """Calls dropkit's functional dropout with the module's flag, as user code does."""

    def forward(self, x):
        return F.dropout(x, 0.5, self.training)


def test_stochastic_turns_on_modules_and_functional_calls_bn_stays_eval():
    net = make_net()
    net[1].running_mean.normal_()  # non-trivial running statistics
    net.eval()
    x = torch.randn(5, 6, dtype=torch.float64)
    bn = net[1]
    stats = (bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone())
    assert torch.equal(net(x), net(x))
    with mc.stochastic():
        assert not torch.equal(net(x), net(x))
        assert not torch.equal(FunctionalDrop().eval()(x), x)
        assert not any(m.training for m in net.modules())
    assert torch.equal(bn.running_mean, stats[0]) and torch.equal(bn.running_var, stats[1])
    assert torch.equal(bn.num_batches_tracked, stats[2])
    assert torch.equal(net(x), net(x))
    assert _state.stochastic_inference_depth() == 0


@pytest.mark.parametrize(
    "layer",
    [
        lambda: dnn.StochasticDepth(0.5, "row"),
        lambda: dnn.DropPath(0.5),
        lambda: dnn.DropBlock2d(0.5, 3),
        lambda: dnn.Dropout2d(0.5),
        lambda: dnn.GaussianDropout(0.5),
    ],
)
def test_stochastic_switches_drop_path_and_dropblock(layer):
    module = layer().eval()
    x = torch.ones(8, 4, 6, 6)
    assert torch.equal(module(x), x)
    with mc.stochastic():
        assert not torch.equal(module(x), x)
    assert torch.equal(module(x), x)


def test_stochastic_restores_depth_on_error_and_nests():
    with pytest.raises(RuntimeError), mc.stochastic():
        with mc.stochastic():
            assert _state.stochastic_inference_depth() == 2
        raise RuntimeError
    assert _state.stochastic_inference_depth() == 0


def test_stochastic_switches_torch_dropout_modules_when_given_the_model():
    model = torch.nn.Sequential(torch.nn.Dropout(0.5)).eval()
    x = torch.ones(100)
    with mc.stochastic(model):
        assert (model(x) == 0).any()
    assert not model[0].training and torch.equal(model(x), x)


def naive(net, x, samples, seed):
    """The [T, B, C] reference: one pass per sample on the documented sample stream."""
    probs = []
    net.eval()
    with mc.stochastic():
        for t in range(samples):
            previous = _state.set_sample_stream(_state.SampleStream(seed, replica=t))
            try:
                probs.append(torch.softmax(net(x), -1))
            finally:
                _state.set_sample_stream(previous)
    return torch.stack(probs)


@pytest.mark.parametrize("batch_replicas,max_rows", [(False, 1), (True, 15), (True, 8192)])
def test_estimators_match_naive_computation(batch_replicas, max_rows):
    net = make_net()
    x = torch.randn(5, 6, dtype=torch.float64)
    result = mc.mc_predict(net, x, 25, seed=3, batch_replicas=batch_replicas, max_rows=max_rows)
    stack = naive(net, x, 25, 3)
    mean = stack.mean(0)
    entropy = -(mean * mean.log()).sum(-1)
    expected_entropy = -(stack * stack.log()).sum(-1).mean(0)
    assert result.samples == 25 and result.mean.shape == (5, 4) and result.entropy.shape == (5,)
    assert torch.allclose(result.mean, mean, rtol=0, atol=1e-12)
    assert torch.allclose(result.entropy, entropy, rtol=0, atol=1e-12)
    assert torch.allclose(result.mutual_information, entropy - expected_entropy, atol=1e-12)
    assert torch.allclose(result.variance, stack.var(0, unbiased=False), rtol=0, atol=1e-12)
    assert (result.mutual_information >= -1e-12).all()
    assert not torch.allclose(result.variance, torch.zeros_like(result.variance))


def row_net(layer):
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 16), torch.nn.ReLU(), layer, torch.nn.Linear(16, 3)
    ).double()


PER_SAMPLE_LAYERS = {
    "dropout": lambda: dnn.Dropout(0.4),
    "gaussian": lambda: dnn.GaussianDropout(0.4),
    "alpha": lambda: dnn.AlphaDropout(0.4),
    "drop_path_row": lambda: dnn.StochasticDepth(0.4, "row"),
    "drop_connect_per_sample": lambda: dnn.DropConnectLinear(16, 16, p=0.4, per_sample=True),
}


@pytest.mark.parametrize("name", sorted(PER_SAMPLE_LAYERS))
def test_batched_pass_equals_looped_passes_bit_for_bit(name):
    net = row_net(PER_SAMPLE_LAYERS[name]()).eval()
    x = torch.randn(4, 6, dtype=torch.float64)
    samples = 5
    with mc.stochastic():
        looped = []
        for t in range(samples):
            previous = _state.set_sample_stream(_state.SampleStream(11, replica=t))
            looped.append(net(x))
            _state.set_sample_stream(previous)
        previous = _state.set_sample_stream(_state.SampleStream(11, 0, replicas=samples))
        batched = net(x.repeat(samples, 1))
        _state.set_sample_stream(previous)
    assert torch.equal(torch.cat(looped), batched)
    assert not torch.equal(looped[0], looped[1])  # the samples do differ


def test_batched_equals_looped_with_spatial_maps():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.BatchNorm2d(4), dnn.Dropout2d(0.3),
        dnn.DropBlock2d(0.3, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 5),
    ).double()  # fmt: skip
    x = torch.randn(3, 2, 8, 8, dtype=torch.float64)
    looped = mc.mc_predict(net, x, 8, seed=4, batch_replicas=False)
    batched = mc.mc_predict(net, x, 8, seed=4, batch_replicas=True, max_rows=12)
    assert torch.allclose(looped.mean, batched.mean, rtol=0, atol=1e-10)
    assert torch.allclose(looped.variance, batched.variance, rtol=0, atol=1e-10)


def test_memory_budget_chunks_and_keeps_results():
    net = make_net()
    x = torch.randn(5, 6, dtype=torch.float64)
    looped = mc.mc_predict(net, x, 10, seed=9, batch_replicas=False)
    calls = []
    hook = net[4].register_forward_hook(lambda m, a, o: calls.append(o.shape[0]))
    # After the prefix a row is 32 float64 wide, the widest activation too: 3 * 256 bytes a row,
    # so 15 rows (3 samples) per forward after the first, measuring pass.
    small = mc.mc_predict(net, x, 10, seed=9, batch_replicas=True, memory_budget=15 * 768)
    hook.remove()
    assert calls == [5, 15, 15, 15]
    assert torch.allclose(small.mean, looped.mean, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="memory_budget"):
        mc.mc_predict(net, x, 2, memory_budget=0)


def test_prefix_runs_once_and_is_detected():
    net = make_net()
    x = torch.randn(5, 6, dtype=torch.float64)
    calls = []
    hook = net[0].register_forward_hook(lambda m, a, o: calls.append(o.shape[0]))
    auto = mc.mc_predict(net, x, 6, seed=1)
    assert calls == [5]  # the Linear/BN/ReLU prefix ran once, on x alone
    calls.clear()
    whole = mc.mc_predict(net, x, 6, seed=1, prefix=None)
    assert sum(calls) == 30
    hook.remove()
    assert torch.allclose(auto.mean, whole.mean, rtol=0, atol=1e-12)
    explicit = mc.mc_predict(net[3:], net[:3].eval()(x), 6, seed=1, prefix=None)
    assert torch.allclose(auto.mean, explicit.mean, rtol=0, atol=1e-12)


def test_prefix_that_draws_from_the_stream_is_not_reused():
    torch.manual_seed(0)
    net = torch.nn.Sequential(FunctionalDrop(), torch.nn.Linear(6, 3), dnn.Dropout(0.2)).double()
    x = torch.randn(4, 6, dtype=torch.float64)
    auto = mc.mc_predict(net, x, 6, seed=2)
    whole = mc.mc_predict(net, x, 6, seed=2, prefix=None)
    assert torch.allclose(auto.mean, whole.mean, rtol=0, atol=1e-12)
    assert (auto.variance[:, 0] > 0).all()
    with pytest.raises(ValueError, match="prefix drew from the dropkit stream"):
        mc.mc_predict(net[1:], x, 2, prefix=net[0])


def test_model_mode_restored_and_reproducible():
    net = make_net().train()
    x = torch.randn(3, 6, dtype=torch.float64)
    torch.manual_seed(1)
    a = mc.mc_predict(net, x, 4)
    torch.manual_seed(1)
    b = mc.mc_predict(net, x, 4)
    c = mc.mc_predict(net, x, 4)
    assert net.training and net[1].training and torch.equal(a.mean, b.mean)
    assert not torch.equal(a.mean, c.mean)


def test_bad_arguments():
    net, x = make_net(), torch.randn(3, 6, dtype=torch.float64)
    with pytest.raises(ValueError, match="samples must be an integer >= 1"):
        mc.mc_predict(net, x, 0)
    with pytest.raises(ValueError, match="batch_replicas"):
        mc.mc_predict(net, x, 2, batch_replicas="yes")
    with pytest.raises(ValueError, match="max_rows"):
        mc.mc_predict(net, x, 2, max_rows=0)
    with pytest.raises(TypeError, match="prefix"):
        mc.mc_predict(net, x, 2, prefix=3)
    with pytest.raises(ValueError, match=r"logits of shape \(B, C\)"):
        mc.mc_predict(torch.nn.Sequential(dnn.Dropout(0.1)), torch.ones(3), 2)


def test_batch_wide_ops_fall_back_to_looping_and_warn_when_forced():
    net = torch.nn.Sequential(dnn.DropConnectLinear(4, 3, p=0.5)).double()
    assert mc.batch_wide_modules(net) == ["0"]
    x = torch.randn(2, 4, dtype=torch.float64)
    auto = mc.mc_predict(net, x, 6, seed=2)
    looped = mc.mc_predict(net, x, 6, seed=2, batch_replicas=False)
    assert torch.equal(auto.mean, looped.mean)
    with pytest.warns(UserWarning, match="draw once per batch"):
        mc.mc_predict(net, x, 6, seed=2, batch_replicas=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mc.mc_predict(row_net(dnn.StochasticDepth(0.2, "row")), torch.randn(2, 6).double(), 3)
    assert mc.batch_wide_modules(row_net(dnn.StochasticDepth(0.2, "batch"))) == ["2"]
    assert mc.batch_wide_modules(dnn.DropBlock2d(0.2, 3, normalize="batch")) != []


def test_exports():
    assert dropkit.mc.mc_predict is mc.mc_predict


def test_stochastic_reaches_a_compiled_model():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), dnn.Dropout(0.5)).eval()
    compiled = torch.compile(net, fullgraph=True, backend="eager")
    x = torch.randn(3, 4)
    assert torch.equal(compiled(x), net(x))
    with mc.stochastic():
        torch.manual_seed(5)
        sampled = compiled(x)
        torch.manual_seed(5)
        assert torch.equal(sampled, net(x)) and not torch.equal(sampled, net[0](x))
    assert torch.equal(compiled(x), net(x))


def test_torch_dropout_modules_are_sampled_and_restored():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 3))
    x = torch.randn(2, 4)
    result = mc.mc_predict(net.eval(), x, 8)
    assert (result.variance > 0).any() and not net[1].training


def test_stochastic_torch_dropout_modules_stay_in_eval_mode_and_other_threads_see_identity():
    import threading

    model = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Dropout2d(0.5)).eval()
    x = torch.ones(4, 3, 5, 5)
    seen = []
    with mc.stochastic(model):
        assert not any(m.training for m in model.modules())  # no shared mode switched
        assert (model(x) == 0).any()
        worker = threading.Thread(target=lambda: seen.append(torch.equal(model(x), x)))
        worker.start()
        worker.join()
    assert seen == [True]
    assert torch.equal(model(x), x)  # hooks removed


def test_stochastic_is_scoped_to_the_calling_thread():
    """A thread evaluating in eval mode stays deterministic while another runs mc_predict."""
    import threading

    net = make_net().eval()
    x = torch.randn(3, 6, dtype=torch.float64)
    reference = net(x).detach()
    stop = threading.Event()
    differing = []

    def evaluator():
        for _ in range(200):
            differing.append(not torch.equal(net(x), reference))
        stop.set()

    thread = threading.Thread(target=evaluator)
    thread.start()
    runs = 0
    while not stop.is_set() or runs == 0:
        mc.mc_predict(net, x, samples=8, seed=runs, batch_replicas=False)
        runs += 1
    thread.join()
    assert len(differing) == 200 and sum(differing) == 0
    assert runs > 0 and _state.stochastic_inference_depth() == 0


def test_sample_stream_is_scoped_to_the_calling_thread():
    import threading

    stream = _state.SampleStream(5)
    previous = _state.set_sample_stream(stream)
    try:
        seen = []
        worker = threading.Thread(target=lambda: seen.append(_state.sample_stream()))
        worker.start()
        worker.join()
        assert seen == [None] and _state.sample_stream() is stream
    finally:
        _state.set_sample_stream(previous)


def test_compiled_op_recompiles_when_stochastic_inference_is_switched():
    def f(x):
        return F.dropout(x, 0.5, False)

    compiled = torch.compile(f, fullgraph=True, backend="eager")
    x = torch.ones(64)
    assert torch.equal(compiled(x), x)
    with mc.stochastic():
        assert (compiled(x) == 0).any()
    assert torch.equal(compiled(x), x)


@pytest.mark.parametrize("bad", ["x", 3, torch.ones(2)])
def test_stochastic_refuses_what_is_not_a_module(bad):
    expected = "stochastic\\(\\) takes the model \\(an nn.Module\\)"
    with pytest.raises(TypeError, match=expected), mc.stochastic(bad):
        pass
    assert _state.stochastic_inference_depth() == 0


@pytest.mark.parametrize("seed", [1.7, 2.0, True, torch.tensor(True), torch.tensor(1.5), "3"])
def test_mc_predict_refuses_non_integer_seeds(seed):
    with pytest.raises(TypeError, match="seed must be an integer"):
        mc.mc_predict(make_net(), torch.randn(2, 6, dtype=torch.float64), 2, seed=seed)


@pytest.mark.parametrize("seed", [2**64, -(2**63) - 1, 2**70])
def test_mc_predict_refuses_seeds_outside_64_bits(seed):
    with pytest.raises(ValueError, match=r"seed must be an integer in \[-2\*\*63, 2\*\*64\), got"):
        mc.mc_predict(make_net(), torch.randn(2, 6, dtype=torch.float64), 2, seed=seed)


def test_mc_predict_takes_numpy_and_tensor_integer_seeds():
    import numpy as np

    net, x = make_net(), torch.randn(2, 6, dtype=torch.float64)
    a = mc.mc_predict(net, x, 3, seed=np.int64(9))
    b = mc.mc_predict(net, x, 3, seed=torch.tensor(9))
    c = mc.mc_predict(net, x, 3, seed=9 + 2**64 - 2**64)
    assert torch.equal(a.mean, b.mean) and torch.equal(a.mean, c.mean)


def test_mc_predict_explains_a_one_dimensional_output():
    model = torch.nn.Sequential(torch.nn.Linear(6, 1), dnn.Dropout(0.2), torch.nn.Flatten(0))
    with pytest.raises(ValueError) as error:
        mc.mc_predict(model.double(), torch.randn(15, 6, dtype=torch.float64), 2,
                      batch_replicas=False)  # fmt: skip
    message = str(error.value)
    assert "shape (B, C)" in message and "got shape (15,)" in message
    assert "torch.stack([torch.zeros_like(z), z], dim=1)" in message


def test_mc_predict_explains_rows_that_do_not_match_the_batch():
    class Pooled(torch.nn.Module):
        def forward(self, x):
            return F.dropout(x, 0.1, self.training).sum(0, keepdim=True)

    with pytest.raises(ValueError, match="must keep dim 0 as the batch"):
        mc.mc_predict(Pooled(), torch.randn(5, 3), 2)


def test_stochastic_is_scoped_to_the_asyncio_task():
    import asyncio

    x = torch.ones(256)

    async def sampling(ready: asyncio.Event, done: asyncio.Event):
        with mc.stochastic():
            ready.set()
            await done.wait()  # the other task runs while this one is inside the block
            return bool((F.dropout(x, 0.5, False) == 0).any())

    async def evaluating(ready: asyncio.Event, done: asyncio.Event):
        await ready.wait()
        result = torch.equal(F.dropout(x, 0.5, False), x)
        done.set()
        return result

    async def main():
        ready, done = asyncio.Event(), asyncio.Event()
        return await asyncio.gather(sampling(ready, done), evaluating(ready, done))

    assert asyncio.run(main()) == [True, True]
    assert _state.stochastic_inference_depth() == 0


def test_mc_predict_keeps_the_models_dtype():
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), dnn.Dropout(0.5), torch.nn.Linear(8, 3))
    out = mc.mc_predict(net, torch.randn(4, 6), 5, seed=1)
    for value in (out.mean, out.entropy, out.mutual_information, out.variance):
        assert value.dtype == torch.float32
    wide = mc.mc_predict(net.double(), torch.randn(4, 6, dtype=torch.float64), 5, seed=1)
    assert wide.mean.dtype == torch.float64
    torch.testing.assert_close(wide.mean.sum(1), torch.ones(4, dtype=torch.float64))


def test_batch_wide_modules_asks_each_module():
    class PerBatch(torch.nn.Module):
        draws_once_per_batch = True

        def forward(self, x):
            return x

    net = torch.nn.Sequential(torch.nn.Linear(6, 3), PerBatch(), dnn.Dropout(0.1))
    assert mc.batch_wide_modules(net) == ["1"]
    assert dnn.DropConnectLinear(2, 2, p=0.5).draws_once_per_batch
    assert not dnn.DropConnectLinear(2, 2, p=0.5, per_sample=True).draws_once_per_batch
    assert not getattr(dnn.Dropout(0.1), "draws_once_per_batch", False)


def test_mc_does_not_import_the_peers():
    import subprocess
    import sys

    code = "import sys, dropkit.mc; print(sorted(m for m in sys.modules if 'compat' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "dropkit.compat.timm" not in out.stdout and "torchvision" not in out.stdout
