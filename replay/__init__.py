"""Track replay: cleaning, simplification, trips, stops and mileage, exports, and their HTTP routes."""
