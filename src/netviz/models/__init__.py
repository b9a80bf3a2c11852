"""Model definitions shipped with netviz (registered in :mod:`netviz.registry`)."""
