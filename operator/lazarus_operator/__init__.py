"""Lazarus operator: watches TrainingJobs and relaunches them from the newest valid checkpoint."""
