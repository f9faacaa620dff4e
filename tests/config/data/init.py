import math
scale = 2
