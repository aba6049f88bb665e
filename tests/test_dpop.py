"""The DPOP loss: lambda = 0 is TRL's sigmoid DPO loss; the positive term and the metrics by hand."""

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from aligner.train.losses import METRIC_NAMES, dpop_loss, mean_metrics


def _logps(seed: int, n: int = 7):
    g = torch.Generator().manual_seed(seed)
    pc = -torch.rand(n, generator=g, dtype=torch.float64) * 40 - 1
    pr = -torch.rand(n, generator=g, dtype=torch.float64) * 40 - 1
    rc = pc + torch.randn(n, generator=g, dtype=torch.float64) * 3
    rr = pr + torch.randn(n, generator=g, dtype=torch.float64) * 3
    return pc, pr, rc, rr


def _trl_sigmoid_dpo(pc, pr, rc, rr, beta):
    """TRL 1.16 has no standalone DPO loss function: the sigmoid loss and its metrics live inside
    ``DPOTrainer._compute_loss(self, model, inputs, return_outputs)``.  We call that method unchanged on a minimal
    stand-in for the trainer (the attributes it reads, values from a real ``DPOConfig``) with
    ``precompute_ref_logps=True`` so the reference log-probs come from ``inputs``, and a stand-in model whose
    per-token log-probs are one column holding each sequence's summed log-prob (TRL sums over the sequence)."""
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(output_dir="unused", beta=beta, loss_type=["sigmoid"], bf16=False, use_cpu=True)
    n = pc.shape[0]
    stub = SimpleNamespace(
        model=SimpleNamespace(training=True),
        accelerator=SimpleNamespace(device=torch.device("cpu"), gather=lambda x: x, gather_for_metrics=lambda x: x),
        aux_loss_enabled=False, ld_alpha=args.ld_alpha, precompute_ref_logps=True,
        f_divergence_type=args.f_divergence_type, loss_types=list(args.loss_type),
        loss_weights=args.loss_weights or [1.0], beta=args.beta, label_smoothing=args.label_smoothing,
        use_weighting=args.use_weighting, args=args, _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _total_train_tokens=0, _tp_size=1,
    )
    summed = torch.cat([pc, pr]).unsqueeze(1)  # (2n, 1): batch is [chosen..., rejected...]

    def fake_model(**kwargs):
        return SimpleNamespace(log_probs=summed, entropy=torch.zeros_like(summed), mean_logits=torch.zeros_like(summed),
                               is_top1=torch.zeros_like(summed, dtype=torch.bool))

    inputs = {
        "input_ids": torch.ones(2 * n, 2, dtype=torch.long),
        "attention_mask": torch.ones(2 * n, 2, dtype=torch.long),
        "completion_mask": torch.tensor([[0, 1]] * (2 * n)),
        "ref_chosen_logps": rc, "ref_rejected_logps": rr,
    }
    loss = DPOTrainer._compute_loss(stub, fake_model, inputs, return_outputs=False)
    return loss, {k: v[-1] for k, v in stub._metrics["train"].items()}


@pytest.mark.parametrize("beta", [0.1, 0.3])
def test_lambda_zero_equals_trl_sigmoid_dpo(beta):
    pc, pr, rc, rr = _logps(1)
    ours, metrics = dpop_loss(pc, pr, rc, rr, beta=beta, lam=0.0)
    theirs, trl_metrics = _trl_sigmoid_dpo(pc, pr, rc, rr, beta)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-12, abs=1e-12)
    mine = mean_metrics(metrics)
    for name in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
                 "logps/chosen", "logps/rejected"):
        # TRL averages the accuracies in float32, hence 1e-6 rather than exact.
        assert mine[name] == pytest.approx(trl_metrics[name], rel=1e-6, abs=1e-9), name


def test_positive_term_and_metrics_by_hand():
    pc, pr, rc, rr = _logps(2, n=5)
    beta, lam = 0.3, 50.0
    loss, m = dpop_loss(pc, pr, rc, rr, beta=beta, lam=lam)
    per_pair = []
    for i in range(5):
        d = beta * ((pc[i] - rc[i]) - (pr[i] - rr[i])).item()
        dpo = math.log1p(math.exp(-d))  # -log sigmoid(d)
        pos = lam * max(0.0, (rc[i] - pc[i]).item())
        per_pair.append(dpo + pos)
        assert m["loss/dpo"][i].item() == pytest.approx(dpo, rel=1e-12)
        assert m["loss/positive"][i].item() == pytest.approx(pos, rel=1e-12, abs=1e-12)
        assert m["rewards/accuracies"][i].item() == float(d > 0)
        assert m["rewards/margins"][i].item() == pytest.approx(d, rel=1e-12, abs=1e-12)
    assert loss.item() == pytest.approx(sum(per_pair) / 5, rel=1e-12)
    assert set(m) == set(METRIC_NAMES) - {"loss/nll"}  # no chosen_lengths given: no NLL to report
    # The data has pairs on both sides of the reference, so both the hinge and its zero branch are exercised.
    assert (m["loss/positive"] > 0).any() and (m["loss/positive"] == 0).any()


def test_positive_term_gradient_only_when_chosen_falls_below_reference():
    rc = torch.tensor([-10.0, -10.0])
    rr = torch.tensor([-12.0, -12.0])
    pc = torch.tensor([-11.0, -9.0], requires_grad=True)  # first below the reference, second above
    pr = torch.tensor([-12.0, -12.0], requires_grad=True)
    lam, beta = 50.0, 0.3
    loss, _ = dpop_loss(pc, pr, rc, rr, beta=beta, lam=lam)
    loss.backward()
    grad0, grad1 = pc.grad.tolist()
    d = beta * ((pc - rc) - (pr - rr)).detach()
    dpo_grad = (-beta * torch.sigmoid(-d) / 2).tolist()  # d(mean -log sigmoid(d))/d pc
    assert grad0 == pytest.approx(dpo_grad[0] - lam / 2, rel=1e-6)
    assert grad1 == pytest.approx(dpo_grad[1], rel=1e-6)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="one shape"):
        dpop_loss(torch.zeros(3), torch.zeros(3), torch.zeros(2), torch.zeros(3))


# --- --rpo_alpha and --logit_clamp (issue 15 item 4, issue 14 T7) ----------------------------------------------

def _token_batch(seed: int, n: int = 4, width: int = 9):
    """Per-token policy log-probs (2n, width-1) for [chosen..., rejected...] with a completion mask of varying
    lengths (zeros outside it, as a fused LM head gives for label -100), and summed reference log-probs."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(2 * n, width, dtype=torch.long)
    for i in range(2 * n):
        start = int(torch.randint(1, 4, (1,), generator=g))
        end = int(torch.randint(start + 1, width + 1, (1,), generator=g))
        mask[i, start:end] = 1
    per_token = -torch.rand(2 * n, width - 1, generator=g, dtype=torch.float64) * 4 * mask[:, 1:]
    summed = per_token.sum(1)
    rc = summed[:n] + torch.randn(n, generator=g, dtype=torch.float64)
    rr = summed[n:] + torch.randn(n, generator=g, dtype=torch.float64)
    return per_token, mask, rc, rr


def _trl_loss(per_token, mask, rc, rr, beta, loss_type, loss_weights):
    """TRL 1.16's ``DPOTrainer._compute_loss`` on per-token log-probs (see ``_trl_sigmoid_dpo``)."""
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(output_dir="unused", beta=beta, loss_type=loss_type, loss_weights=loss_weights, bf16=False,
                     use_cpu=True)
    stub = SimpleNamespace(
        model=SimpleNamespace(training=True),
        accelerator=SimpleNamespace(device=torch.device("cpu"), gather=lambda x: x, gather_for_metrics=lambda x: x),
        aux_loss_enabled=False, ld_alpha=args.ld_alpha, precompute_ref_logps=True,
        f_divergence_type=args.f_divergence_type, loss_types=list(args.loss_type),
        loss_weights=args.loss_weights, beta=args.beta, label_smoothing=args.label_smoothing,
        use_weighting=args.use_weighting, args=args, _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _total_train_tokens=0, _tp_size=1,
    )

    def fake_model(**kwargs):
        return SimpleNamespace(log_probs=per_token, entropy=torch.zeros_like(per_token),
                               mean_logits=torch.zeros_like(per_token), is_top1=torch.zeros_like(per_token, dtype=torch.bool))

    inputs = {"input_ids": torch.ones_like(mask), "attention_mask": torch.ones_like(mask), "completion_mask": mask,
              "ref_chosen_logps": rc, "ref_rejected_logps": rr}
    return DPOTrainer._compute_loss(stub, fake_model, inputs, return_outputs=False)


@pytest.mark.parametrize("alpha", [0.5, 2.0])
def test_rpo_alpha_equals_trl_sigmoid_plus_sft_and_the_direct_computation(alpha):
    per_token, mask, rc, rr = _token_batch(3)
    n = rc.shape[0]
    summed = per_token.sum(1)
    lengths = mask[:, 1:].sum(1)  # tokens scored per sequence (position 0 has no prediction)
    ours, metrics = dpop_loss(summed[:n], summed[n:], rc, rr, beta=0.1, lam=0.0, rpo_alpha=alpha,
                              chosen_lengths=lengths[:n])
    theirs = _trl_loss(per_token, mask, rc, rr, 0.1, ["sigmoid", "sft"], [1.0, alpha])
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-12)
    # Direct: the DPO mean plus alpha x the chosen tokens' NLL pooled over the batch (not a mean of per-answer means).
    chosen_tokens = [per_token[i, j].item() for i in range(n) for j in range(per_token.shape[1]) if mask[i, j + 1]]
    nll = -sum(chosen_tokens) / len(chosen_tokens)
    dpo = sum(math.log1p(math.exp(-0.1 * ((summed[i] - rc[i]) - (summed[n + i] - rr[i])).item())) for i in range(n)) / n
    assert ours.item() == pytest.approx(dpo + alpha * nll, rel=1e-12)
    per_answer = sum(-summed[i].item() / lengths[i].item() for i in range(n)) / n
    assert abs(per_answer - nll) > 1e-3  # the lengths differ, so the two normalisations are told apart
    assert metrics["loss/nll"].shape == (n,) and metrics["loss/nll"][0].item() == pytest.approx(nll, rel=1e-12)
    # alpha = 0 leaves the loss alone but still reports the NLL
    plain, m0 = dpop_loss(summed[:n], summed[n:], rc, rr, beta=0.1, lam=0.0, chosen_lengths=lengths[:n])
    assert plain.item() == pytest.approx(dpo, rel=1e-12) and m0["loss/nll"][0].item() == pytest.approx(nll, rel=1e-12)
    with pytest.raises(ValueError, match="chosen_lengths"):
        dpop_loss(summed[:n], summed[n:], rc, rr, rpo_alpha=alpha)


def test_rpo_gradient_is_alpha_over_the_pooled_token_count():
    pc = torch.tensor([-5.0, -9.0], requires_grad=True)
    lengths = torch.tensor([2, 6])
    zeros = torch.zeros(2)
    loss, _ = dpop_loss(pc, zeros - 3, pc.detach(), zeros - 3, beta=0.1, lam=0.0, rpo_alpha=0.5,
                        chosen_lengths=lengths)
    loss.backward()
    # d/dpc of the DPO term at a zero margin is -beta * sigmoid(0) / B = -0.025 per pair; the NLL adds -alpha / 8
    assert pc.grad.tolist() == pytest.approx([-0.025 - 0.5 / 8, -0.025 - 0.5 / 8], rel=1e-6)


def test_logit_clamp_changes_the_loss_only_beyond_the_bound():
    pc = torch.tensor([0.0, 0.0], dtype=torch.float64, requires_grad=True)
    pr = torch.tensor([900.0, 100.0], dtype=torch.float64)  # beta * Delta = -90 and -10 (beta 0.1)
    ref = torch.zeros(2, dtype=torch.float64)
    clamped, m = dpop_loss(pc, pr, ref, ref, beta=0.1, lam=0.0, logit_clamp=50.0)
    free, m_free = dpop_loss(pc, pr, ref, ref, beta=0.1, lam=0.0)
    softplus = lambda x: math.log1p(math.exp(-abs(x))) + max(x, 0.0)  # noqa: E731  -log sigmoid(-x)
    assert m["loss/dpo"][0].item() == pytest.approx(softplus(50.0), rel=1e-12)
    assert m_free["loss/dpo"][0].item() == pytest.approx(softplus(90.0), rel=1e-12)
    assert m["loss/dpo"][1].item() == m_free["loss/dpo"][1].item() == pytest.approx(softplus(10.0), rel=1e-12)
    assert free.item() - clamped.item() == pytest.approx(20.0, rel=1e-9)  # (90 - 50) / 2 pairs
    clamped.backward()
    assert pc.grad[0].item() == 0.0 and pc.grad[1].item() < 0  # no gradient beyond the clamp
    with pytest.raises(ValueError, match="logit_clamp"):
        dpop_loss(pc, pr, ref, ref, logit_clamp=0.0)
