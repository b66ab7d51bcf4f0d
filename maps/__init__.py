"""folium map builders and styles (filled in by the web-catalogue issue)."""
