"""The report's parts: data and frames, groups, answers, sections, plots, sample grids, the HTML
page, number formatting (`tune/report.py` puts them together).
"""
