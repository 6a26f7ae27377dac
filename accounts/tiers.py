"""The default tiers, loaded by seed_defaults; admins edit them afterwards."""

DEFAULT_TIERS = [
    {"slug": "free", "name": "Free", "images_per_minute": 5, "images_per_day": 50},
    {"slug": "pro", "name": "Pro", "images_per_minute": 30, "images_per_day": 1000},
    # Enterprise organizations usually carry custom numbers; these are the starting point.
    {"slug": "enterprise", "name": "Enterprise", "images_per_minute": 300, "images_per_day": 100000},
]
