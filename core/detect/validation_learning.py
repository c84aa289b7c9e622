"""Learning from the analyst's validations: a small logistic regression on the evidence.

Once enough detections are validated (``MIN_VALIDATED`` confirmed-or-rejected, with both
outcomes present), a logistic regression fitted on the evidence fields of the detection
score (``ev_*``) predicts, for every unvalidated detection, the probability that the analyst
will confirm it, so the validation list can show the most likely true detections first (or
the most doubtful ones). Each prediction is explained: the contribution of each piece of
evidence to the log-odds, relative to an average validated detection.

Pure numpy/scipy: L2-regularised maximum likelihood on standardised features, solved with
L-BFGS (exact gradient). Missing evidence (NaN) is replaced by the training mean, so it
contributes nothing.
"""

import numpy as np
from scipy.optimize import minimize

from ..errors import ParameterError

#: validated items needed before the classifier is used
MIN_VALIDATED = 20

POSITIVE = "confirmed"
NEGATIVE = "rejected"


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic


class EvidenceClassifier:
    """Logistic regression P(confirmed | evidence).

    Attributes after :meth:`fit`: ``names`` (feature names), ``mean_``, ``scale_``
    (standardisation), ``coef_`` (per standardised feature), ``intercept_``.
    """

    def __init__(self, l2=1.0):
        if not l2 >= 0:
            raise ParameterError("l2 must be >= 0 (got %r)." % (l2,))
        self.l2 = float(l2)
        self.names = []
        self.mean_ = self.scale_ = self.coef_ = None
        self.intercept_ = 0.0

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y, names=None):
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] != y.shape[0]:
            raise ParameterError("X must be (n_items, n_features) and y (n_items,); got %s "
                                 "and %s." % (X.shape, y.shape))
        if not set(np.unique(y)) <= {0.0, 1.0} or len(np.unique(y)) < 2:
            raise ParameterError("The classifier needs both confirmed and rejected "
                                 "detections among the validated ones.")
        self.names = list(names) if names is not None else ["x%d" % i for i in range(X.shape[1])]
        with np.errstate(invalid="ignore"):
            mean = np.nanmean(np.where(np.isfinite(X), X, np.nan), axis=0)
        mean = np.where(np.isfinite(mean), mean, 0.0)
        Xf = np.where(np.isfinite(X), X, mean)
        scale = Xf.std(axis=0)
        scale = np.where(scale > 1e-12, scale, 1.0)
        Z = (Xf - mean) / scale
        n, k = Z.shape
        l2 = self.l2

        def loss(w):
            b, coef = w[0], w[1:]
            z = b + Z @ coef
            # log(1 + exp(z)) - y z, stable
            ll = np.logaddexp(0.0, z) - y * z
            p = _sigmoid(z)
            r = p - y
            f = ll.sum() / n + 0.5 * l2 * coef @ coef / n
            g = np.empty_like(w)
            g[0] = r.sum() / n
            g[1:] = (Z.T @ r + l2 * coef) / n
            return f, g

        w0 = np.zeros(k + 1)
        prior = np.clip(y.mean(), 1e-3, 1 - 1e-3)
        w0[0] = np.log(prior / (1 - prior))
        res = minimize(loss, w0, jac=True, method="L-BFGS-B",
                       options=dict(maxiter=500, gtol=1e-8))
        self.intercept_ = float(res.x[0])
        self.coef_ = res.x[1:].copy()
        self.mean_, self.scale_ = mean, scale
        self.converged_ = bool(res.success)
        return self

    # --------------------------------------------------------------- prediction
    def _standardise(self, X):
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        X = np.where(np.isfinite(X), X, self.mean_)
        return (X - self.mean_) / self.scale_

    def decision_function(self, X):
        return self.intercept_ + self._standardise(X) @ self.coef_

    def predict_proba(self, X):
        """P(confirmed) for each row of X."""
        return _sigmoid(self.decision_function(X))

    def contributions(self, X):
        """(n_items, n_features) contributions to the log-odds of each evidence, relative to
        the average validated detection (their sum + intercept is the log-odds)."""
        return self._standardise(X) * self.coef_

    def explain(self, x, top=3):
        """The ``top`` evidence fields driving one prediction: list of (name, contribution),
        largest absolute contribution first."""
        c = self.contributions(x)[0]
        order = np.argsort(-np.abs(c))[:top]
        return [(self.names[i], float(c[i])) for i in order]


def training_set(records, feature_names):
    """X, y from validated records (dicts with 'status' and the feature names); uncertain
    and unvalidated records are left out."""
    rows, labels = [], []
    for rec in records:
        status = rec.get("status")
        if status not in (POSITIVE, NEGATIVE):
            continue
        rows.append([_number(rec.get(name)) for name in feature_names])
        labels.append(1.0 if status == POSITIVE else 0.0)
    X = np.array(rows, dtype=np.float64).reshape(len(rows), len(feature_names))
    return X, np.array(labels, dtype=np.float64)


def _number(value):
    try:
        v = float(value)
    except (TypeError, ValueError):
        return np.nan
    return v if np.isfinite(v) else np.nan


def can_learn(records, min_validated=MIN_VALIDATED):
    """(ok, reason): whether enough confirmed/rejected records exist to fit."""
    n_pos = sum(1 for r in records if r.get("status") == POSITIVE)
    n_neg = sum(1 for r in records if r.get("status") == NEGATIVE)
    if n_pos + n_neg < min_validated:
        return False, ("%d of %d confirmed/rejected detections needed before learning"
                       % (n_pos + n_neg, min_validated))
    if n_pos == 0 or n_neg == 0:
        return False, "learning needs both confirmed and rejected detections"
    return True, "learned from %d confirmed and %d rejected" % (n_pos, n_neg)


def rank_unvalidated(records, feature_names, min_validated=MIN_VALIDATED, l2=1.0):
    """Fit on the validated records and predict the unvalidated ones.

    Returns ``(classifier or None, predictions, message)`` where ``predictions`` maps the
    index of each unvalidated record (in ``records``) to ``(probability, drivers)``;
    drivers as in :meth:`EvidenceClassifier.explain`. Without enough validations (or
    without evidence fields), returns ``(None, {}, reason)``.
    """
    if not feature_names:
        return None, {}, "no evidence fields (ev_*) in the detections"
    ok, message = can_learn(records, min_validated)
    if not ok:
        return None, {}, message
    X, y = training_set(records, feature_names)
    clf = EvidenceClassifier(l2=l2).fit(X, y, names=feature_names)
    todo = [i for i, r in enumerate(records) if r.get("status") == "unvalidated"]
    predictions = {}
    if todo:
        Xu = np.array([[_number(records[i].get(n)) for n in feature_names] for i in todo],
                      dtype=np.float64)
        proba = clf.predict_proba(Xu)
        contrib = clf.contributions(Xu)
        top = np.argsort(-np.abs(contrib), axis=1)[:, :3]
        for j, i in enumerate(todo):
            predictions[i] = (float(proba[j]), [(feature_names[k], float(contrib[j, k]))
                                                for k in top[j]])
    return clf, predictions, message
