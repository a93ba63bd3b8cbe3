"""Parameters, multiply-accumulates and the papers' reference figures."""

from .complexity import check_input_size, compare_models, count_macs, count_params, min_input_size
