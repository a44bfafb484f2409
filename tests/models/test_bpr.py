from recforge.models.bpr import BPR
from tests.models.contract import RecommenderContract


class TestBPR(RecommenderContract):
    def make(self):
        return BPR(factors=8, learning_rate=0.05, iterations=200, random_state=0)
