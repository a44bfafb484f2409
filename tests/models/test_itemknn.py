from recforge.models.itemknn import ItemKNN
from tests.models.contract import RecommenderContract


class TestItemKNN(RecommenderContract):
    def make(self):
        return ItemKNN(neighbors=5)
