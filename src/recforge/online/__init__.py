"""Online evaluation: what the served lists led to, and which version sells more.

* :mod:`~recforge.online.impressions`: every answer recorded (id, user, version, source, arm,
  items by position, time), durable in batches under ``<home>/impressions``;
* :mod:`~recforge.online.attribution`: each event to the impression it followed (named by its
  ``recommendation_id``, or the latest that showed its item to its user within the window);
* :mod:`~recforge.online.rates`: impressions, click-through and conversion per version and
  source, and by position (``recforge online report``);
* :mod:`~recforge.online.experiments`: A/B experiments (the book, sticky assignment, the
  verdict on users with a two-proportion test, A/A re-splits);
* :mod:`~recforge.online.simulator`: synthetic users with the generator's true tastes driving a
  running server (``recforge simulate``).

Serving records and routes (:mod:`recforge.serving`); the CLI reports (:mod:`recforge.cli.online`).
"""
