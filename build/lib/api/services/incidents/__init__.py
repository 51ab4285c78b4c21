"""The incident workflow: discover → report → dispatch → close (發現 → 通報 → 派工 → 結案).

``reporting`` records new incidents, ``lifecycle`` moves them through the state machine,
``sharing`` lets other bureaus see them, ``work_orders`` manages crews, and ``reads`` answers
what the caller may see — the same for the graph and for REST.
"""
