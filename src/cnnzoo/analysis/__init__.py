"""Parameters, multiply-accumulates and the papers' reference figures."""

from .complexity import count_macs, count_params, min_input_size
