"""Why a portrait did or did not reach the library: facts about one job in, a Diagnosis out.

Pure and total: no I/O, and every job gets a Diagnosis whatever its metadata holds. Job status is
never taken as evidence of output; objects and rows are (docs/domain.md section 2).
"""

from charfix.diagnosis.core import diagnose
from charfix.diagnosis.work import Rules

__all__ = ["Rules", "diagnose"]
