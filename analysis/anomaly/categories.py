"""Anomaly categories for lab video, shared by rules, explanations, the simulator and metrics."""

CATEGORIES = {
    "spill": "spill or leak",
    "dropped_object": "dropped object",
    "wrong_placement": "wrong placement",
    "unattended": "container left open or unattended",
    "fast_handling": "unsafe fast handling",
    "protocol_step": "step skipped or out of order",
    "restricted_zone": "entry into a restricted zone",
    "equipment_idle": "equipment idle when it should run",
    "other": "other anomaly",
}
