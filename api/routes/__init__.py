"""One thin APIRouter per module."""
