"""Extract, transform and load municipal files into PostGIS, one job manifest per dataset."""
