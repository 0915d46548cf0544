"""``roadparse review``: the merge map (COMRP's one human step) made in a local web page.

- :mod:`~roadparse.review.session`: what the page shows, read from a clustered work directory;
- :mod:`~roadparse.review.views`: member, tile and preview pictures (pure array functions);
- :mod:`~roadparse.review.choices`: the page's choices as a merge map, saved atomically;
- :mod:`~roadparse.review.server`: the Flask app on 127.0.0.1 with a token; ``static/`` its page.
"""
