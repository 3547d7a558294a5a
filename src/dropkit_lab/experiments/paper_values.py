"""Every published number the experiments are compared with, in one place, with its source.

Errors are test-set error rates in percent unless a key says ``errors`` (count out of 10,000).
In Srivastava et al. 2014 ``p`` is the probability of *retaining* a unit; dropkit's ``p`` is the
probability of dropping it (as in torch), so the claims below are restated in drop probabilities.
"""

from __future__ import annotations

HINTON_2012 = (
    "Hinton et al. 2012, Improving neural networks by preventing co-adaptation of feature "
    "detectors, arXiv:1207.0580"
)
SRIVASTAVA_2014 = (
    "Srivastava et al. 2014, Dropout: a simple way to prevent neural networks from overfitting, "
    "JMLR 15"
)
WAN_2013 = "Wan et al. 2013, Regularization of neural networks using DropConnect, ICML"
LI_2019 = (
    "Li et al. 2019, Understanding the disharmony between dropout and batch normalization by "
    "variance shift, CVPR"
)


def _value(value: float, source: str, **extra) -> dict:
    return {"value": value, "source": source, **extra}


# Hinton et al. 2012, figure 1 and its text: 784-800-800-10 on MNIST, test errors out of 10,000.
HINTON_2012_MNIST_ERRORS = {
    "no dropout": _value(
        160,
        f"{HINTON_2012}, fig. 1 (best published backprop result, no pre-training/weight sharing)",
    ),
    "50% hidden": _value(130, f"{HINTON_2012}, fig. 1 (about 130 errors)"),
    "20% input + 50% hidden": _value(110, f"{HINTON_2012}, fig. 1 (about 110 errors)"),
}

# Srivastava et al. 2014, table 2 (MNIST): the rows that are plain MLPs, test error %.
SRIVASTAVA_2014_TABLE2 = {
    "Standard NN, logistic, 2x800": _value(
        1.60, f"{SRIVASTAVA_2014}, table 2 (Simard et al. 2003)"
    ),
    "Dropout NN, logistic, 3x1024": _value(1.35, f"{SRIVASTAVA_2014}, table 2"),
    "Dropout NN, ReLU, 3x1024": _value(1.25, f"{SRIVASTAVA_2014}, table 2"),
    "Dropout NN + max-norm, ReLU, 3x1024": _value(1.06, f"{SRIVASTAVA_2014}, table 2"),
    "Dropout NN + max-norm, ReLU, 3x2048": _value(1.04, f"{SRIVASTAVA_2014}, table 2"),
    "Dropout NN + max-norm, ReLU, 2x4096": _value(1.01, f"{SRIVASTAVA_2014}, table 2"),
    "Dropout NN + max-norm, ReLU, 2x8192": _value(0.95, f"{SRIVASTAVA_2014}, table 2"),
}

# Wan et al. 2013, MNIST, two fully connected layers of 800 ReLU units, no data augmentation,
# test error % (mean ± std over their runs).
WAN_2013_MNIST_RELU = {
    "No-Drop": _value(1.62, f"{WAN_2013}, MNIST 2x800 ReLU table", std=0.037),
    "Dropout": _value(1.28, f"{WAN_2013}, MNIST 2x800 ReLU table", std=0.040),
    "DropConnect": _value(1.20, f"{WAN_2013}, MNIST 2x800 ReLU table", std=0.034),
}

CLAIMS = {
    "mc-vs-scaling": (
        f"{SRIVASTAVA_2014}, fig. 11 and section 7.5: Monte-Carlo averaging over k sampled nets "
        "matches the weight-scaling rule at about k = 50; beyond that it is slightly better but "
        "within one standard deviation."
    ),
    "p-sweep": (
        f"{SRIVASTAVA_2014}, fig. 9: with n fixed, drop probabilities of about 0.2 to 0.6 "
        "(retain 0.4-0.8) give the lowest test error, 0 (no dropout) and 0.9 are worse; with p*n "
        "fixed, drop probability about 0.4 (retain 0.6) is best. Fig. 10: dropout's gain is "
        "largest on mid-sized training sets."
    ),
    "dropconnect": (
        f"{WAN_2013}: DropConnect and dropout both beat No-Drop; inference by moment matching "
        "(sampling a Gaussian approximation of each unit's input) is the paper's inference rule, "
        "the mean (weight-scaling) network is presented as a cruder approximation."
    ),
    "bn-variance-shift": (
        f"{LI_2019}: dropout placed before a BatchNorm layer makes the variance BN sees at train "
        "time differ from the one at test time (variance shift), which costs accuracy; applying "
        "dropout only after the last BN layer, or a noise whose variance shift is smaller, "
        "reduces it."
    ),
    "features": (
        f"{SRIVASTAVA_2014}, figs. 7 and 8: with dropout, first-layer features are cleaner, more "
        "localised detectors, and hidden activations are sparser (lower mean activation, more "
        "units near zero)."
    ),
}
