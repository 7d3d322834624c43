"""PyTorch as a gradient oracle (float64) for batch norm, the losses, the activations and dropout."""

import numpy as np
import pytest

import graphc as gc

torch = pytest.importorskip("torch")
F = torch.nn.functional

RTOL, ATOL = 1e-10, 1e-12


def _run(outputs, feeds):
    return gc.compile(outputs, backend="numpy")(**feeds)


def _torch_grads(loss_fn, *arrays):
    leaves = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    loss = loss_fn(*leaves)
    loss.backward()
    return loss.detach().numpy(), [t.grad.numpy() for t in leaves]


@pytest.mark.parametrize("shape", [(7, 3), (3, 4, 5, 2)])
def test_batch_norm_training_matches_torch(shape):
    rng = np.random.default_rng(0)
    c = shape[1]
    xv, wv = rng.standard_normal(shape) * 2 + 1, rng.standard_normal(shape)
    gamma0, beta0 = rng.uniform(0.5, 2, c), rng.standard_normal(c)
    rm0, rv0 = rng.standard_normal(c) * 0.1, rng.uniform(0.5, 2, c)

    g = gc.Graph("bn")
    x = g.input("x", shape, "float64")
    gamma, beta = g.param("gamma", gamma0, dtype="float64"), g.param("beta", beta0, dtype="float64")
    rm = g.param("rm", rm0, dtype="float64", trainable=False)
    rv = g.param("rv", rv0, dtype="float64", trainable=False)
    y = gc.batch_norm(x, gamma, beta, rm, rv, training=True, momentum=0.3, eps=1e-4)
    loss = gc.sum(y * wv)
    dx, dgamma, dbeta = gc.grad(loss, [x, gamma, beta])
    got = _run({"y": y, "dx": dx, "dgamma": dgamma, "dbeta": dbeta}, {"x": xv})

    t_rm, t_rv = torch.tensor(rm0), torch.tensor(rv0)
    tx, tg, tb = (torch.tensor(a, requires_grad=True) for a in (xv, gamma0, beta0))
    ty = F.batch_norm(tx, t_rm, t_rv, tg, tb, training=True, momentum=0.3, eps=1e-4)
    (ty * torch.tensor(wv)).sum().backward()

    np.testing.assert_allclose(got["y"], ty.detach().numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(got["dx"], tx.grad.numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(got["dgamma"], tg.grad.numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(got["dbeta"], tb.grad.numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(g.state["rm"], t_rm.numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(g.state["rv"], t_rv.numpy(), rtol=RTOL, atol=ATOL)


def test_batch_norm_inference_matches_torch():
    rng = np.random.default_rng(1)
    xv, wv = rng.standard_normal((4, 3, 2, 2)), rng.standard_normal((4, 3, 2, 2))
    gamma0, beta0, rm0, rv0 = rng.uniform(0.5, 2, 3), rng.standard_normal(3), rng.standard_normal(3), \
        rng.uniform(0.5, 2, 3)
    g = gc.Graph("bn_eval")
    x = g.input("x", xv.shape, "float64")
    params = [g.param(n, v, dtype="float64") for n, v in
              (("gamma", gamma0), ("beta", beta0), ("rm", rm0), ("rv", rv0))]
    y = gc.batch_norm(x, *params, training=False)
    grads = gc.grad(gc.sum(y * wv), [x, params[0], params[1]])
    got = _run([y, *grads], {"x": xv})
    tensors = [torch.tensor(a, requires_grad=True) for a in (xv, gamma0, beta0)]
    ty = F.batch_norm(tensors[0], torch.tensor(rm0), torch.tensor(rv0), tensors[1], tensors[2], training=False)
    (ty * torch.tensor(wv)).sum().backward()
    np.testing.assert_allclose(got[0], ty.detach().numpy(), rtol=RTOL, atol=ATOL)
    for mine, t in zip(got[1:], tensors):
        np.testing.assert_allclose(mine, t.grad.numpy(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("targets", ["labels", "probs"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_softmax_cross_entropy_matches_torch(targets, reduction):
    rng = np.random.default_rng(2)
    zv = rng.standard_normal((6, 5)) * 3
    tv = rng.integers(0, 5, 6) if targets == "labels" else rng.dirichlet(np.ones(5), 6)
    g = gc.Graph("sce")
    z = g.input("z", zv.shape, "float64")
    t = g.input("t", tv.shape, "int64" if targets == "labels" else "float64")
    loss = gc.softmax_cross_entropy(z, t, reduction=reduction)
    got = _run([loss, gc.grad(loss, z)], {"z": zv, "t": tv})
    tz = torch.tensor(zv, requires_grad=True)
    tl = F.cross_entropy(tz, torch.tensor(tv), reduction=reduction)
    tl.backward()
    np.testing.assert_allclose(got[0], tl.item(), rtol=RTOL)
    np.testing.assert_allclose(got[1], tz.grad.numpy(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ignore_index", [None, 2, -100])
def test_softmax_cross_entropy_spatial_and_ignore_index_match_torch(reduction, ignore_index):
    rng = np.random.default_rng(7)
    zv = rng.standard_normal((3, 4, 2, 5)) * 2
    tv = rng.integers(0, 4, (3, 2, 5))
    if ignore_index is not None:
        tv[rng.random(tv.shape) < 0.3] = ignore_index
    weights = rng.standard_normal(tv.shape) if reduction == "none" else np.array(0.7)
    g = gc.Graph("sce_spatial")
    z, t = g.input("z", zv.shape, "float64"), g.input("t", tv.shape, "int64")
    loss = gc.softmax_cross_entropy(z, t, reduction=reduction, ignore_index=ignore_index)
    got = _run([loss, gc.grad(gc.sum(loss * weights), z)], {"z": zv, "t": tv})
    kwargs = {} if ignore_index is None else {"ignore_index": ignore_index}
    want, (dz,) = _torch_grads(
        lambda a: (F.cross_entropy(a, torch.tensor(tv), reduction=reduction, **kwargs) * torch.tensor(weights)).sum(),
        zv)
    np.testing.assert_allclose(np.sum(got[0] * weights), want, rtol=RTOL)
    np.testing.assert_allclose(got[1], dz, rtol=RTOL, atol=ATOL)


LOSSES = {
    "binary_cross_entropy": (gc.binary_cross_entropy, F.binary_cross_entropy),
    "sigmoid_binary_cross_entropy": (gc.sigmoid_binary_cross_entropy, F.binary_cross_entropy_with_logits),
    "mse": (gc.mse, F.mse_loss),
    "mae": (gc.mae, F.l1_loss),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_elementwise_losses_match_torch(name, reduction):
    rng = np.random.default_rng(3)
    mine, theirs = LOSSES[name]
    pv = rng.uniform(0.02, 0.98, (5, 3)) if name == "binary_cross_entropy" else rng.standard_normal((5, 3)) * 3
    tv = rng.uniform(0, 1, (5, 3))
    weights = rng.standard_normal((5, 3)) if reduction == "none" else np.array(1.7)
    g = gc.Graph(name)
    p, t = g.input("p", pv.shape, "float64"), g.input("t", tv.shape, "float64")
    loss = mine(p, t, reduction=reduction)
    got = _run([loss, *gc.grad(gc.sum(loss * weights), [p, t])], {"p": pv, "t": tv})
    want, (dp, dt) = _torch_grads(lambda a, b: (theirs(a, b, reduction=reduction) * torch.tensor(weights)).sum(),
                                  pv, tv)
    np.testing.assert_allclose(np.sum(got[0] * weights), want, rtol=RTOL)
    np.testing.assert_allclose(got[1], dp, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(got[2], dt, rtol=RTOL, atol=ATOL)


ACTIVATIONS = {
    "elu": (lambda x: gc.elu(x, 0.7), lambda x: F.elu(x, 0.7)),
    "softplus": (gc.softplus, F.softplus),
    "gelu": (gc.gelu, lambda x: F.gelu(x, approximate="tanh")),
    "clip": (lambda x: gc.clip(x, -0.8, 1.3), lambda x: torch.clamp(x, -0.8, 1.3)),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activations_match_torch(name):
    mine, theirs = ACTIVATIONS[name]
    rng = np.random.default_rng(4)
    xv = rng.standard_normal((4, 6)) * 3
    wv = rng.standard_normal((4, 6))
    g = gc.Graph(name)
    x = g.input("x", xv.shape, "float64")
    y = mine(x)
    got = _run([y, gc.grad(gc.sum(y * wv), x)], {"x": xv})
    tx = torch.tensor(xv, requires_grad=True)
    ty = theirs(tx)
    (ty * torch.tensor(wv)).sum().backward()
    np.testing.assert_allclose(got[0], ty.detach().numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(got[1], tx.grad.numpy(), rtol=RTOL, atol=ATOL)


def test_prelu_matches_torch():
    rng = np.random.default_rng(5)
    xv, wv, sv = rng.standard_normal((3, 4, 2, 5)), rng.standard_normal((3, 4, 2, 5)), rng.uniform(0, 0.5, 4)
    g = gc.Graph("prelu")
    x = g.input("x", xv.shape, "float64")
    slope = g.param("slope", sv, dtype="float64")
    y = gc.prelu(x, slope)
    got = _run([y, *gc.grad(gc.sum(y * wv), [x, slope])], {"x": xv})
    _, (dx, ds) = _torch_grads(lambda a, s: (F.prelu(a, s) * torch.tensor(wv)).sum(), xv, sv)
    np.testing.assert_allclose(got[1], dx, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(got[2], ds, rtol=RTOL, atol=ATOL)


def test_dropout_with_the_shared_mask_matches_torch():
    rng = np.random.default_rng(6)
    xv, wv = rng.standard_normal((8, 10)), rng.standard_normal((8, 10))
    rate = 0.35
    g = gc.Graph("dropout")
    x = g.input("x", xv.shape, "float64")
    y = gc.dropout(x, rate, training=True, seed=77)
    loss = gc.sum(gc.tanh(y) * wv)
    got = _run({"y": y, "loss": loss, "dx": gc.grad(loss, x)}, {"x": xv})
    mask = torch.tensor((got["y"] != 0).astype(np.float64))  # graphc's mask, fed to torch
    want, (dx,) = _torch_grads(lambda a: (torch.tanh(a * mask / (1 - rate)) * torch.tensor(wv)).sum(), xv)
    np.testing.assert_allclose(got["loss"], want, rtol=RTOL)
    np.testing.assert_allclose(got["dx"], dx, rtol=RTOL, atol=ATOL)
