"""The default tiers, loaded by seed_defaults; admins edit them afterwards.

`max_concurrent_requests` is how many image requests of one organization may be in flight at once
(docs/operations.md, "Concurrency cap"): well above each tier's images per minute, so that the cap only
ever refuses a tenant holding far more calls open than its limits let through.
"""

DEFAULT_TIERS = [
    {"slug": "free", "name": "Free", "images_per_minute": 5, "images_per_day": 50, "max_concurrent_requests": 20},
    {"slug": "pro", "name": "Pro", "images_per_minute": 30, "images_per_day": 1000, "max_concurrent_requests": 100},
    # Enterprise organizations usually carry custom numbers; these are the starting point.
    {
        "slug": "enterprise",
        "name": "Enterprise",
        "images_per_minute": 300,
        "images_per_day": 100000,
        "max_concurrent_requests": 500,
    },
]
