"""The preference losses: each equals TRL 1.16's loss_type of its name (DPOP with lambda = 0 is TRL's sigmoid;
SimPO is its paper's formula and TRL's CPOTrainer "simpo"), alone and with RPO's NLL; the DPOP positive term and
the metrics by hand; the pair-by-pair form sums to the micro-batch loss."""

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from aligner.train.losses import (
    LOSS_NAMES,
    LOSSES,
    LossSettings,
    dpop_loss,
    mean_metrics,
    preference_loss,
    weighted_preference_loss,
)

REWARD_METRICS = {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
                  "logps/rejected", "logps/ref_chosen", "logps/ref_rejected"}


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
    assert set(m) == REWARD_METRICS | {"loss/dpo", "loss/positive"}  # no chosen_lengths given: no NLL to report
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
    loss = DPOTrainer._compute_loss(stub, fake_model, inputs, return_outputs=False)
    _trl_loss.metrics = {k: v[-1] for k, v in stub._metrics["train"].items()}
    return loss


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


# --- the loss registry (issue 22 item 3) ------------------------------------------------------------------------

TRL_NAMED = ("sigmoid", "ipo", "hinge", "apo_zero")  # DPOTrainer loss_types of the same name


def _split(per_token, mask, rc):
    n = rc.shape[0]
    summed = per_token.sum(1)
    lengths = mask[:, 1:].sum(1)
    return summed[:n], summed[n:], lengths[:n], lengths[n:]


@pytest.mark.parametrize("name", TRL_NAMED)
@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_each_loss_equals_trl_loss_type_of_its_name(name, beta):
    """On per-token log-probs of varying lengths: TRL sums them per sequence (and IPO divides by the completion
    length); ours takes the sums and the response token counts."""
    per_token, mask, rc, rr = _token_batch(11)
    pc, pr, nc, nr = _split(per_token, mask, rc)
    ours, metrics = preference_loss(name, pc, pr, rc, rr, nc, nr, LossSettings(beta=beta))
    theirs = _trl_loss(per_token, mask, rc, rr, beta, [name], [1.0])
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-12, abs=1e-12)
    mine = mean_metrics(metrics)
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
                "logps/rejected"):
        assert mine[key] == pytest.approx(_trl_loss.metrics[key], rel=1e-6, abs=1e-9), key
    own = {"apo_zero": {"loss/apo_chosen", "loss/apo_rejected"}}.get(name, {f"loss/{name}"})
    assert set(metrics) == REWARD_METRICS | own | {"loss/nll"}


@pytest.mark.parametrize("name", TRL_NAMED)
def test_rpo_alpha_combines_with_every_loss_as_trl_name_plus_sft(name):
    per_token, mask, rc, rr = _token_batch(12)
    pc, pr, nc, nr = _split(per_token, mask, rc)
    ours, metrics = preference_loss(name, pc, pr, rc, rr, nc, nr, LossSettings(beta=0.2, rpo_alpha=0.7))
    theirs = _trl_loss(per_token, mask, rc, rr, 0.2, [name, "sft"], [1.0, 0.7])
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-12)
    plain, _ = preference_loss(name, pc, pr, rc, rr, nc, nr, LossSettings(beta=0.2))
    assert ours.item() - plain.item() == pytest.approx(0.7 * metrics["loss/nll"][0].item(), rel=1e-12)


def _cpo_simpo(avg_c, avg_r, beta, gamma):
    """TRL 1.16's ``CPOTrainer.cpo_loss`` (loss_type "simpo", AlphaPO off, no label smoothing) called unchanged on
    a stand-in for the trainer; it takes the length-normalised log-probs."""
    from trl.experimental.cpo import CPOTrainer

    stub = SimpleNamespace(alpha=0.0, loss_type="simpo", simpo_gamma=gamma, beta=beta, label_smoothing=0.0,
                           accelerator=SimpleNamespace(device=torch.device("cpu")))
    return CPOTrainer.cpo_loss(stub, avg_c, avg_r)


@pytest.mark.parametrize("beta,gamma", [(2.0, 0.5), (2.5, 1.4)])
def test_simpo_is_its_papers_formula_and_trl_cpo_simpo(beta, gamma):
    per_token, mask, rc, rr = _token_batch(13)
    pc, pr, nc, nr = _split(per_token, mask, rc)
    ours, metrics = preference_loss("simpo", pc, pr, None, None, nc, nr, LossSettings(beta=beta, simpo_gamma=gamma))
    # Meng et al. 2024, eq. 6: -log sigmoid(beta/|y_w| log pi(y_w|x) - beta/|y_l| log pi(y_l|x) - gamma)
    paper = [math.log1p(math.exp(-(beta * pc[i].item() / nc[i].item() - beta * pr[i].item() / nr[i].item() - gamma)))
             for i in range(pc.shape[0])]
    assert ours.item() == pytest.approx(sum(paper) / len(paper), rel=1e-12)
    losses, chosen_rewards, rejected_rewards = _cpo_simpo(pc / nc, pr / nr, beta, gamma)
    assert ours.item() == pytest.approx(losses.mean().item(), rel=1e-12)
    assert torch.allclose(metrics["rewards/chosen"], chosen_rewards) and torch.allclose(metrics["rewards/rejected"],
                                                                                        rejected_rewards)
    assert not LOSSES["simpo"].needs_reference and "logps/ref_chosen" not in metrics
    assert all(LOSSES[n].needs_reference for n in LOSS_NAMES if n != "simpo")


@pytest.mark.parametrize("beta", [0.1, 0.3])
def test_values_at_zero_log_ratios(beta):
    """Step 1 of a LoRA run (B = 0): the policy is the reference, every log-ratio is 0."""
    per_token, mask, rc, _ = _token_batch(14)
    pc, pr, nc, nr = _split(per_token, mask, rc)
    want = {"dpop": math.log(2), "sigmoid": math.log(2), "ipo": 1 / (4 * beta ** 2), "hinge": 1.0, "apo_zero": 1.0}
    for name, value in want.items():
        loss, metrics = preference_loss(name, pc, pr, pc.clone(), pr.clone(), nc, nr, LossSettings(beta=beta))
        assert loss.item() == pytest.approx(value, rel=1e-12), name
        assert metrics["rewards/margins"].abs().max().item() == 0.0


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_pair_by_pair_loss_sums_to_the_micro_batch_loss(name):
    """The packed layout adds each pair with its share of its padded micro-batch: cut two micro-batches (sizes 4
    and 3) into pieces across them, the sum of the pieces' losses is the sum of the two micro-batch losses, for
    every loss with RPO on; the logged shares average to each micro-batch's loss."""
    per_token, mask, rc, rr = _token_batch(15, n=7)
    pc, pr, nc, nr = _split(per_token, mask, rc)
    settings = LossSettings(beta=0.3, lam=5.0, rpo_alpha=0.4, simpo_gamma=0.5)
    groups = [list(range(4)), list(range(4, 7))]
    want = sum(preference_loss(name, pc[g], pr[g], rc[g], rr[g], nc[g], nr[g], settings)[0] for g in groups)
    sizes = torch.tensor([4] * 4 + [3] * 3)
    tokens = torch.cat([nc[g].sum().expand(len(g)) for g in groups])
    total, shares = 0.0, torch.zeros(7, dtype=torch.float64)
    for piece in ([0, 5], [1, 2, 3, 4], [6]):
        loss, share, _ = weighted_preference_loss(name, pc[piece], pr[piece], rc[piece], rr[piece], nc[piece],
                                                  nr[piece], settings, sizes[piece], tokens[piece])
        total = total + loss
        shares[piece] = share
    assert total.item() == pytest.approx(want.item(), rel=1e-12)
    for g in groups:
        mb = preference_loss(name, pc[g], pr[g], rc[g], rr[g], nc[g], nr[g], settings)[0]
        assert shares[g].mean().item() == pytest.approx(mb.item(), rel=1e-12)


def test_unknown_loss_and_missing_inputs_are_one_line_errors():
    z = torch.zeros(2)
    with pytest.raises(ValueError, match="--loss must be one of dpop, sigmoid, ipo, hinge, apo_zero, simpo"):
        preference_loss("orpo", z, z, z, z)
    with pytest.raises(ValueError, match="needs the reference"):
        preference_loss("sigmoid", z, z, None, None)
    with pytest.raises(ValueError, match="response token counts"):
        preference_loss("ipo", z, z, z, z)
