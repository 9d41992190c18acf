"""``qhopper report``: one self-contained HTML page of plots and tables over the results."""

from pipeline.report.build import ReportInfo, build_report, write_report
from pipeline.report.figures import FIGURE_IDS

__all__ = ["FIGURE_IDS", "ReportInfo", "build_report", "write_report"]
