"""``microtarget report``: what personalization did, as a static page and the numbers behind it."""
