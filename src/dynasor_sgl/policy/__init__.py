"""The program policy: certaindex signals, the stop/trim/expand machine, its config and presets."""
