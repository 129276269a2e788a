"""Attendance: who is on duty where and when (staff, weekly shifts in duty grids, changes, holidays, leave)."""
