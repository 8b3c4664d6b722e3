"""Cost models of a channel graph: what a selection of channels costs (exact), as a differentiable function of soft
widths (AutoBot's loss), and per channel (the criteria). Latency: :mod:`secateurs.cost.latency`."""
