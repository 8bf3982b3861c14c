"""Networks, one readable file per family. Each registers the network deployment receives with
genforge.registry.register_model; genforge/families.py imports them on purpose."""
