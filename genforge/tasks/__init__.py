"""Task families: each file registers its Task subclasses with genforge.registry.register_task;
genforge/families.py imports them on purpose."""
