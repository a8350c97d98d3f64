"""gclf's benchmarks: scripts run from the repository root as `python -m benchmarks.NAME`.

What several of them share (photos, frames, videos, the bare model's rate) lives in
benchmarks.common; a script never imports another through sys.path.
"""
