"""Reports: the run report (HTML) and the cluster gallery."""
