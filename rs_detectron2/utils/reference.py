"""Plain reference implementations of the ranking losses, written straight from the math: the
oracles the fast losses are tested and benchmarked against. Pure torch (no Detectron2), so a
benchmark can use them on a machine with torch alone. They favour readability over speed: a Python
loop over positives, float64 by default.

- :func:`reference_rank_sort` follows the authors' algorithm (Oksuz et al. 2021, Algorithm 1): per
  positive, its ranking and sorting errors and the identity-update gradient distributed to negatives
  and positives.
- :func:`reference_primary_terms` builds the matrix of primary terms L_ij (the paper's Sec. 3) for
  small inputs and takes the gradient as (column sums - row sums) / |P|, an independent route to the
  same numbers.
- :func:`reference_ap_loss` and :func:`reference_alrp_loss`: AP Loss (Chen et al. 2019) and aLRP
  Loss (Oksuz et al. 2020), the same way.
"""

import torch

__all__ = [
    "EPS",
    "reference_alrp_loss",
    "reference_ap_loss",
    "reference_primary_terms",
    "reference_rank_sort",
    "step",
]

EPS = 1e-10


def step(x, delta):
    """H(x): 0 below -delta, 1 above delta, linear in between; [x >= 0] for delta == 0."""
    if delta == 0:
        return (x >= 0).to(x.dtype)
    return torch.clamp(x / (2 * delta) + 0.5, 0.0, 1.0)


def reference_rank_sort(logits, targets, delta=0.5, dtype=torch.float64, use_threshold=False):
    """Loop-over-positives RS loss. Returns (loss_rank, loss_sort, grad) with grad shaped as logits.

    ``use_threshold=True`` keeps only the negatives with s >= min(positive logits) - delta, as the
    authors' code does (exact, only faster); by default every negative is visited.
    """
    s = logits.detach().reshape(-1).to(dtype)
    y = targets.detach().reshape(-1).to(dtype)
    grad = torch.zeros_like(s)
    pos = torch.nonzero(y > 0).squeeze(1)
    if pos.numel() == 0:
        zero = torch.zeros((), dtype=dtype, device=s.device)
        return zero, zero, grad.view(logits.shape)
    neg = torch.nonzero(y == 0).squeeze(1)
    if use_threshold:
        neg = neg[s[neg] >= s[pos].min() - delta]
    sp, yp, sn = s[pos], y[pos], s[neg]
    g_pos = torch.zeros_like(sp)
    g_neg = torch.zeros_like(sn)
    rank_errors, sort_errors = [], []
    for i in range(pos.numel()):
        hp = step(sp - sp[i], delta)  # H(s_k - s_i) over positives, self term included
        hn = step(sn - sp[i], delta)  # H(s_j - s_i) over negatives
        n_fp = hn.sum()
        rank_pos = hp.sum()
        l_rank = n_fp / (rank_pos + n_fp)
        # current sorting error: H-weighted mean of (1 - y) over the positives above i
        current = (hp * (1 - yp)).sum() / rank_pos
        # target sorting error: the same mean over the positives allowed above i (y_k >= y_i)
        allowed = (yp >= yp[i]).to(dtype)
        target = (hp * allowed * (1 - yp)).sum() / (hp * allowed).sum()
        l_sort = current - target
        rank_errors.append(l_rank)
        sort_errors.append(l_sort)
        if n_fp > EPS:  # ranking error pushed onto the negatives above i
            g_pos[i] -= l_rank
            g_neg += hn * l_rank / n_fp
        missorted = hp * (1 - allowed)  # lower-quality positives scored above/near i
        d = missorted.sum()
        if d > EPS:  # sorting error pushed onto them
            g_pos[i] -= l_sort
            g_pos += missorted * l_sort / d
    num_pos = pos.numel()
    grad[pos] = g_pos / num_pos
    grad[neg] = g_neg / num_pos
    loss_rank = torch.stack(rank_errors).mean()
    loss_sort = torch.stack(sort_errors).mean()
    return loss_rank, loss_sort, grad.view(logits.shape)


def reference_primary_terms(logits, targets, delta=0.5, dtype=torch.float64):
    """RS loss through the explicit primary-term matrix L (n x n), for small n.

    L[i, j] = l_R(i) H(s_j - s_i) / N_FP(i) for i positive, j negative;
    L[i, j] = l_S(i) H(s_j - s_i) [y_j < y_i] / D_i for i, j positive; 0 otherwise.
    The loss is sum(L) / |P| and the identity-update gradient is (L.sum(0) - L.sum(1)) / |P|.
    Returns (loss_rank, loss_sort, grad, L).
    """
    s = logits.detach().reshape(-1).to(dtype)
    y = targets.detach().reshape(-1).to(dtype)
    n = s.numel()
    is_pos = y > 0
    is_neg = y == 0
    num_pos = int(is_pos.sum())
    L = torch.zeros(n, n, dtype=dtype)
    rank_errors, sort_errors = [], []
    for i in range(n):
        if not is_pos[i]:
            continue
        h = step(s - s[i], delta)  # H(s_j - s_i) for every j
        zero = torch.zeros_like(h)
        h_pos = torch.where(is_pos, h, zero)
        h_neg = torch.where(is_neg, h, zero)
        y_pos = torch.where(is_pos, y, zero)  # ignored targets may be -inf: keep them out
        n_fp = h_neg.sum()
        rank_pos = h_pos.sum()
        l_rank = n_fp / (rank_pos + n_fp)
        current = (h_pos * (1 - y_pos)).sum() / rank_pos
        allowed = h_pos * (y_pos >= y[i])
        target = (allowed * (1 - y_pos)).sum() / allowed.sum()
        l_sort = current - target
        rank_errors.append(l_rank)
        sort_errors.append(l_sort)
        if n_fp > EPS:
            L[i] += l_rank * h_neg / n_fp
        missorted = h_pos * (y_pos < y[i])
        if missorted.sum() > EPS:
            L[i] += l_sort * missorted / missorted.sum()
    if num_pos == 0:
        zero = torch.zeros((), dtype=dtype)
        return zero, zero, torch.zeros(n, dtype=dtype).view(logits.shape), L
    grad = (L.sum(0) - L.sum(1)) / num_pos
    return (
        torch.stack(rank_errors).mean(),
        torch.stack(sort_errors).mean(),
        grad.view(logits.shape),
        L,
    )


# ----------------------------------------------------------------------------------------------
# Reference AP and aLRP losses (Chen et al. 2019; Oksuz et al. 2020): a loop over positives in
# ascending logit order, written from the math (binary targets: y > 0 is a positive).


def _binary_pool(logits, targets, dtype, delta, use_threshold):
    s = logits.detach().reshape(-1).to(dtype)
    y = targets.detach().reshape(-1).to(dtype)
    pos = torch.nonzero(y > 0).squeeze(1)
    neg = torch.nonzero(y == 0).squeeze(1)
    if use_threshold and pos.numel():
        neg = neg[s[neg] >= s[pos].min() - delta]
    return s, pos, neg


def reference_ap_loss(logits, targets, delta=1.0, dtype=torch.float64, use_threshold=False):
    """Loop-over-positives AP loss. Returns (loss, grad) with grad shaped as logits.

    Per positive i (visited from the lowest logit up): rank+(i) = 1 + sum_{k != i} H(s_k - s_i),
    NFP(i) = sum_j H(s_j - s_i), prec(i) = rank+(i) / rank(i); the interpolated precision is the
    running maximum of prec; the negatives above i share (1 - interpolated) in proportion to H.
    """
    s, pos, neg = _binary_pool(logits, targets, dtype, delta, use_threshold)
    grad = torch.zeros_like(s)
    if pos.numel() == 0:
        return torch.zeros((), dtype=dtype), grad.view(logits.shape)
    sp, sn = s[pos], s[neg]
    g_pos = torch.zeros_like(sp)
    g_neg = torch.zeros_like(sn)
    interpolated = torch.zeros_like(sp)
    running_max = 0.0
    for i in torch.argsort(sp, stable=True).tolist():
        hp = step(sp - sp[i], delta)
        hp[i] = 0.0  # the self term is replaced by the 1 below
        hn = step(sn - sp[i], delta)
        rank_pos = 1 + hp.sum()
        n_fp = hn.sum()
        prec = float(rank_pos / (rank_pos + n_fp))
        running_max = max(running_max, prec)
        interpolated[i] = running_max
        g_pos[i] = -(1 - running_max)
        if n_fp > 0:
            g_neg += (1 - running_max) * hn / n_fp
    num_pos = pos.numel()
    grad[pos] = g_pos / num_pos
    grad[neg] = g_neg / num_pos
    return 1 - interpolated.mean(), grad.view(logits.shape)


def reference_alrp_loss(
    logits, targets, loc_errors, delta=1.0, dtype=torch.float64, use_threshold=False
):
    """Loop-over-positives aLRP loss. Returns (loss_cls, loss_loc, grad, grad_loc): the
    classification component and its identity-update gradient (shaped as logits), the
    localisation component and its gradient w.r.t. ``loc_errors`` (P,), in flat positive order.

    Classification: e(i) = (NFP(i) + sum_{k != i} H(s_k - s_i) l(k)) / rank(i) where
    NFP(i) > 1e-5, pushed onto the negatives above i in proportion to H. Localisation: positives by
    descending logit (ties: flat order), the mean of cumsum(l) / rank; its gradient by a loop too.
    """
    s, pos, neg = _binary_pool(logits, targets, dtype, delta, use_threshold)
    loc = loc_errors.detach().reshape(-1).to(dtype)
    grad = torch.zeros_like(s)
    zero = torch.zeros((), dtype=dtype)
    if pos.numel() == 0:
        return zero, zero, grad.view(logits.shape), torch.zeros_like(loc)
    sp, sn = s[pos], s[neg]
    num_pos = pos.numel()
    g_pos = torch.zeros_like(sp)
    g_neg = torch.zeros_like(sn)
    rank = torch.zeros_like(sp)
    cls_errors = torch.zeros_like(sp)
    for i in torch.argsort(sp, stable=True).tolist():
        hp = step(sp - sp[i], delta)
        hp[i] = 0.0
        hn = step(sn - sp[i], delta)
        n_fp = hn.sum()
        rank[i] = 1 + hp.sum() + n_fp
        cls_errors[i] = n_fp / rank[i]
        if n_fp > 1e-5:
            error = (n_fp + (hp * loc).sum()) / rank[i]
            g_pos[i] = -error
            g_neg += error * hn / n_fp
    grad[pos] = g_pos / num_pos
    grad[neg] = g_neg / num_pos
    # Descending logit, ties by flat order: sort by (-s, index).
    desc = sorted(range(num_pos), key=lambda k: (-float(sp[k]), k))
    loss_loc = zero.clone()
    grad_loc = torch.zeros_like(loc)
    running = zero.clone()
    for q, k in enumerate(desc):
        running = running + loc[k]
        loss_loc = loss_loc + running / rank[k]
        for r in desc[: q + 1]:  # every positive at or above k gains 1 / rank(k)
            grad_loc[r] += 1 / rank[k] / num_pos
    return cls_errors.mean(), loss_loc / num_pos, grad.view(logits.shape), grad_loc
