"""Function tools for the demos: plain functions with type hints and docstrings."""

from __future__ import annotations

from typing import Literal

from harmony_agent.tools import function_tool

_FORECASTS = {"paris": 18, "tokyo": 23, "oslo": 4, "lima": 19}


@function_tool
def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> dict:
    """Current temperature in a city (demo data).

    Args:
        city: City name, for example "Paris".
        unit: Temperature unit.
    """
    key = city.strip().lower()
    if key not in _FORECASTS:
        raise ValueError(f"no weather data for {city!r}; known cities: {', '.join(sorted(_FORECASTS))}")
    celsius = _FORECASTS[key]
    value = celsius if unit == "celsius" else round(celsius * 9 / 5 + 32)
    return {"city": city, "temperature": value, "unit": unit}
