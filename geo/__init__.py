"""Spatial logic with no dependency on the rest of Shahr: CRS, geometry repair, SQL builders."""
