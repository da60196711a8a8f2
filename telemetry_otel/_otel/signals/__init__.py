"""One pipeline per signal: its provider, processors, queues and collect path.

``pipeline.py`` composes a TracePipeline, an EventPipeline, a MetricPipeline and the
CallbackHub for one collector, from the parts every signal shares (``common.py``).
"""
